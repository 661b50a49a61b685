//! Files from a page: downloading a step's attachments and results with the session
//! cookie, and uploading attachments from the new-task form (an in-page request with the
//! CSRF token in its header, so the form can show the upload's progress).

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::accounts::signin;
use crate::api::{self, AppState};
use crate::error::Error;
use crate::web::session::CSRF_HEADER;
use crate::web::{Page, PageResult};

/// `GET /files/{id}`: the file's bytes as a download. Always
/// `application/octet-stream` with `Content-Disposition: attachment`, whatever the
/// uploader declared: a file of the workspace never renders as a page of the hub.
pub async fn download(
    State(ctx): State<AppState>,
    page: Page,
    Path(file_id): Path<String>,
) -> PageResult {
    Ok(api::files::file_response(
        &ctx,
        page.actor(),
        &file_id,
        Some("application/octet-stream"),
    )
    .await?)
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    pub name: String,
}

/// What the form keeps of an upload.
#[derive(Debug, Serialize)]
pub struct Uploaded {
    pub id: String,
    pub name: String,
    pub size_bytes: i64,
}

/// `PUT /files?name=…` with the CSRF token in `X-CSRF-Token`: stores the body as a file
/// of the member's workspace, exactly as `PUT /v1/files` does, and answers its id; errors
/// in the API's JSON envelope, for the form's script to show.
pub async fn upload(
    State(ctx): State<AppState>,
    Query(query): Query<UploadQuery>,
    req: Request,
) -> Result<Response, Response> {
    let (mut parts, body) = req.into_parts();
    let page = Page::from_request_parts(&mut parts, &ctx)
        .await
        .map_err(IntoResponse::into_response)?;
    let token = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok());
    if !token.is_some_and(|token| signin::csrf_matches(&page.session, token)) {
        return Err(Error::forbidden(
            "this upload has no valid CSRF token; reload the page and try again",
        )
        .into_response());
    }
    let req = Request::from_parts(parts, body);
    let row = api::files::store_body(&ctx, page.actor(), &query.name, req)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            id: row.id,
            name: row.name,
            size_bytes: row.size_bytes,
        }),
    )
        .into_response())
}
