//! Attachment upload and download.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::accounts::Actor;
use crate::api::AppState;
use crate::api::extract::{ApiQuery, Auth};
use crate::api::views::timestamp;
use crate::error::{Error, Result};
use crate::files::{self, FileRow};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file name (or send the `X-Filename` header).
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileResponse {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// The SHA-256 of the bytes, in hex.
    pub sha256: String,
    pub created_at: String,
}

/// A file's bytes (the body of an upload and of a download).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBytes(pub Vec<u8>);

impl From<FileRow> for FileResponse {
    fn from(row: FileRow) -> Self {
        FileResponse {
            id: row.id,
            name: row.name,
            content_type: row.content_type,
            size_bytes: row.size_bytes,
            sha256: row.sha256,
            created_at: timestamp(row.created_at),
        }
    }
}

/// Uploads a file; step results and answers refer to it by id.
///
/// The body is the file's bytes, streamed to disk; its `Content-Type` is kept (default
/// `application/octet-stream`).
#[utoipa::path(put, path = "/v1/files", tag = "files",
    params(UploadQuery, ("X-Filename" = Option<String>, Header, description = "The file name, when `name` is not given.")),
    request_body(content = FileBytes, content_type = "application/octet-stream", description = "the file's bytes"),
    responses(
        (status = 201, description = "the file was stored", body = FileResponse),
        (status = 400, description = "`bad_request`: no file name (neither `name` nor `X-Filename`), or the upload was interrupted"),
        (status = 413, description = "`too_large`: the file is over the hub's upload limit (`--max-upload-bytes`)"),
        (status = 422, description = "`invalid`: a file name that is empty, over 255 characters or contains a slash (control characters are replaced by `_`); `field` is `name`"),
    ))]
pub async fn upload(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<UploadQuery>,
    req: Request,
) -> Result<(StatusCode, Json<FileResponse>)> {
    let headers: &HeaderMap = req.headers();
    let name = query
        .name
        .or_else(|| {
            headers
                .get("x-filename")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        })
        .ok_or_else(|| Error::BadRequest {
            message: "name the file with ?name= or the X-Filename header".into(),
            field: Some("name".into()),
        })?;
    let row = store_body(&ctx, &actor, &name, req).await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Downloads a file, with its `Content-Type`, `Content-Disposition: attachment` and
/// `Repr-Digest` (RFC 9530: `sha-256=:BASE64:`, the SHA-256 of the bytes) so that a
/// client can check what it received.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files",
    params(("id" = String, Path, description = "The file's id.")),
    responses(
        (status = 200, description = "the file's bytes; `Repr-Digest: sha-256=:BASE64:` carries their SHA-256", content_type = "application/octet-stream", body = FileBytes,
            headers(("Repr-Digest" = String, description = "`sha-256=:` + the base64 of the bytes' SHA-256 + `:` (RFC 9530)"))),
        (status = 404, description = "`not_found`: no file with this id in the caller's workspace"),
    ))]
pub async fn download(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(file_id): Path<String>,
) -> Result<Response> {
    file_response(&ctx, &actor, &file_id, None).await
}

/// Stores a request's body as the file `name` of the caller's workspace, keeping its
/// `Content-Type`; a declared `Content-Length` over the limit is refused before a byte
/// is read. The API's and the dashboard's uploads.
pub async fn store_body(
    ctx: &AppState,
    actor: &Actor,
    name: &str,
    req: Request,
) -> Result<FileRow> {
    let headers = req.headers();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        && length > ctx.settings.max_upload_bytes
    {
        return Err(Error::TooLarge(format!(
            "uploads are limited to {} bytes",
            ctx.settings.max_upload_bytes
        )));
    }
    let stream = req.into_body().into_data_stream();
    files::upload(ctx, actor, name, &content_type, stream).await
}

/// A file of the caller's workspace as a download: its bytes streamed, with
/// `Content-Disposition: attachment` and `Repr-Digest`, and its stored `Content-Type`
/// unless `content_type` overrides it. The API's and the dashboard's downloads.
pub async fn file_response(
    ctx: &AppState,
    actor: &Actor,
    file_id: &str,
    content_type: Option<&str>,
) -> Result<Response> {
    let (row, path) = files::find(ctx, actor, file_id).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|err| Error::internal(format!("opening {}: {err}", path.display())))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                content_type.map_or(row.content_type, str::to_string),
            ),
            (header::CONTENT_LENGTH, row.size_bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                files::content_disposition(&row.name),
            ),
            (
                header::HeaderName::from_static("repr-digest"),
                files::repr_digest(&row.sha256),
            ),
        ],
        body,
    )
        .into_response())
}
