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

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let url = self.urls.route(path);
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
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
