//! Files from a page: downloading a step's attachments and results with the session
//! cookie, and uploading attachments from the new-task form (an in-page request with the
//! CSRF token in its header, so the form can show the upload's progress).

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::accounts::signin;
use crate::api::AppState;
use crate::error::Error;
use crate::files;
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
    let (row, path) = files::find(&ctx, page.actor(), &file_id).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|err| Error::internal(format!("opening {}: {err}", path.display())))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (CONTENT_LENGTH, row.size_bytes.to_string()),
            (CONTENT_DISPOSITION, files::content_disposition(&row.name)),
        ],
        body,
    )
        .into_response())
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
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    if let Some(length) = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value: &HeaderValue| value.to_str().ok()?.parse::<u64>().ok())
        && length > ctx.settings.max_upload_bytes
    {
        return Err(Error::TooLarge(format!(
            "uploads are limited to {} bytes",
            ctx.settings.max_upload_bytes
        ))
        .into_response());
    }
    let row = files::upload(
        &ctx,
        page.actor(),
        &query.name,
        &content_type,
        body.into_data_stream(),
    )
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
