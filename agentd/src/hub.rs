//! The hub's REST API, as used by the teammate commands (`login`, `inbox`, `approve`,
//! `task create`, …), authenticated with the agent token.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::credentials::Secret;
use crate::error::{Error, Result};
use crate::tls::HubUrls;

/// `GET /v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub kind: String,
    pub workspace_id: String,
    pub member_id: String,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub agent_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// `GET /v1/me/inbox`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inbox {
    pub approvals: Vec<PendingApproval>,
    pub questions: Vec<PendingQuestion>,
}

/// An approval waiting for this teammate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingApproval {
    pub approval_id: String,
    pub step_id: String,
    pub task_id: String,
    pub step_title: String,
    pub approval_level: i32,
    /// The attempt whose result is shown; a decision names it.
    pub attempt: u32,
    /// The digest of the result shown; a decision names it.
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub result: Value,
}

/// A question waiting for this teammate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingQuestion {
    pub id: String,
    pub step_id: String,
    pub task_id: String,
    pub step_title: String,
    pub question: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// `PUT /v1/files`: an uploaded attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadedFile {
    pub id: String,
    pub name: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Deserialize)]
struct Envelope {
    error: EnvelopeError,
}

#[derive(Deserialize)]
struct EnvelopeError {
    code: String,
    message: String,
}

/// A REST client for one hub and one agent token.
#[derive(Debug, Clone)]
pub struct HubClient {
    urls: HubUrls,
    token: Secret,
    http: reqwest::Client,
}

impl HubClient {
    /// A client for `urls` that authenticates with `token`.
    pub fn new(urls: HubUrls, token: Secret, tls: Arc<rustls::ClientConfig>) -> Result<HubClient> {
        let http = reqwest::Client::builder()
            .user_agent(crate::AGENT_VERSION)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .tls_backend_preconfigured((*tls).clone())
            .build()
            .map_err(|err| Error::other(format!("cannot build the HTTP client: {err}")))?;
        Ok(HubClient { urls, token, http })
    }

    /// The hub's URLs.
    pub fn urls(&self) -> &HubUrls {
        &self.urls
    }

    /// Who the token belongs to; fails with [`Error::Unauthorized`] on a bad token.
    pub async fn me(&self) -> Result<Me> {
        self.get("v1/me").await
    }

    /// `GET` a route, decoding the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(Method::GET, path, None).await
    }

    /// `POST` a JSON body to a route, decoding the JSON answer.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Uploads a file with `PUT /v1/files`, streaming it from disk; `sent` is called with
    /// the number of bytes handed to the connection so far.
    pub async fn upload(
        &self,
        path: &std::path::Path,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<UploadedFile> {
        use futures_util::TryStreamExt;

        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| Error::config(format!("{} is not a file", path.display())))?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|err| Error::config(format!("cannot read {}: {err}", path.display())))?;
        let size = file.metadata().await?.len();
        let mut total = 0u64;
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).inspect_ok(move |chunk| {
                total += chunk.len() as u64;
                sent(total);
            });
        let mut url = self.urls.route("v1/files");
        url.query_pairs_mut().append_pair("name", &name);
        let request = self
            .http
            .put(url.clone())
            .timeout(Duration::from_secs(3600))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream));
        self.finish(request, url).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let url = self.urls.route(path);
        let mut request = self.http.request(method, url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        self.finish(request, url).await
    }

    async fn finish<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: reqwest::Url,
    ) -> Result<T> {
        let request = request.bearer_auth(self.token.expose());
        let response = request.send().await.map_err(|err| Error::Unreachable {
            hub: self.urls.display(),
            detail: describe_reqwest(&err),
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|err| Error::Unreachable {
            hub: self.urls.display(),
            detail: describe_reqwest(&err),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|err| Error::other(format!("unexpected answer from {url}: {err}")));
        }
        let (code, message) = match serde_json::from_slice::<Envelope>(&bytes) {
            Ok(envelope) => (envelope.error.code, envelope.error.message),
            Err(_) => (
                "unknown".to_string(),
                String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            ),
        };
        if status == StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized {
                hub: self.urls.display(),
                detail: message,
            });
        }
        if status.is_server_error() && code != "internal" && code != "unavailable" {
            // Not the hub's envelope: a proxy in front of it, or not a hub at all.
            return Err(Error::Unreachable {
                hub: self.urls.display(),
                detail: format!("HTTP {status}"),
            });
        }
        Err(Error::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// The innermost cause of a reqwest error, which is what explains a failed connect.
fn describe_reqwest(err: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}
