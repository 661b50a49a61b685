//! The agent WebSocket gateway at `GET /v1/agent/connect`.

use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// Upgrades an agent connection (see docs/protocol.md).
pub async fn connect() -> Response {
    Error::Unavailable(crate::store::StoreError::NestedTransaction).into_response()
}
