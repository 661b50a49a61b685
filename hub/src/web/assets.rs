//! The dashboard's static files, compiled into the binary: htmx (vendored from npm, its
//! version in the name), the style sheet and the live-update script (their names carry a
//! hash of their content). Served with a one-year `immutable` cache: a changed file gets
//! a new name.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::web::PageError;

/// htmx 4.0.1 (`htmx.org` on npm, `dist/htmx.min.js`, 0BSD).
pub const HTMX_PATH: &str = "/assets/htmx-4.0.1.min.js";
pub static CSS_PATH: LazyLock<String> = LazyLock::new(|| hashed("app", CSS, "css"));
pub static SCRIPT_PATH: LazyLock<String> = LazyLock::new(|| hashed("live", SCRIPT, "js"));

const HTMX: &str = include_str!("../../assets/htmx-4.0.1.min.js");
const CSS: &str = include_str!("../../assets/app.css");
const SCRIPT: &str = include_str!("../../assets/live.js");

/// `/assets/<stem>-<first 12 hex digits of the content's SHA-256>.<ext>`.
fn hashed(stem: &str, content: &str, ext: &str) -> String {
    let digest = hex::encode(Sha256::digest(content.as_bytes()));
    format!("/assets/{stem}-{}.{ext}", &digest[..12])
}

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    let path = format!("/assets/{name}");
    let (body, content_type) = if path == HTMX_PATH {
        (HTMX, "text/javascript; charset=utf-8")
    } else if path == *CSS_PATH {
        (CSS, "text/css; charset=utf-8")
    } else if path == *SCRIPT_PATH {
        (SCRIPT, "text/javascript; charset=utf-8")
    } else {
        return PageError::from(Error::not_found(format!("asset `{name}`"))).into_response();
    };
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
