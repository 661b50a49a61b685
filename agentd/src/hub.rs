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

/// `GET /v1/me/notifications`: a page of the member's notifications, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    pub meta: NotificationMeta,
}

/// The page's `meta`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationMeta {
    pub count: usize,
    #[serde(default)]
    pub next_before: Option<String>,
    pub has_more: bool,
    pub unread: UnreadCounts,
}

/// Unread notifications per priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadCounts {
    pub action: u64,
    pub info: u64,
}

/// One notification: what waits on the member (`action`) or what they should know
/// (`info`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub kind: String,
    pub priority: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub step_id: Option<String>,
    #[serde(default)]
    pub subject_id: Option<String>,
    #[serde(default)]
    pub data: Value,
    pub created_at: String,
    #[serde(default)]
    pub read_at: Option<String>,
    #[serde(default)]
    pub resolved_at: Option<String>,
    pub unread: bool,
}

/// `POST /v1/me/notifications/read`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadAll {
    pub marked: u64,
    pub unread: UnreadCounts,
}

/// `POST /v1/me/notifications/{id}/read`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadOne {
    pub notification: Notification,
    pub unread: UnreadCounts,
}

/// `PUT /v1/files`: an uploaded attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadedFile {
    pub id: String,
    pub name: String,
    pub size_bytes: u64,
    pub sha256: String,
}

/// A file downloaded by [`HubClient::download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedFile {
    pub name: String,
    pub path: std::path::PathBuf,
    pub size_bytes: u64,
    /// Hex.
    pub sha256: String,
}

/// The file name of a `Content-Disposition` header: `filename*=UTF-8''…` (RFC 6266,
/// percent-encoded) first, else `filename="…"`.
pub fn disposition_filename(header: &str) -> Option<String> {
    let params = header.split(';').map(str::trim);
    let mut plain = None;
    for param in params {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "filename*" => {
                let (charset, rest) = value.trim().split_once('\'')?;
                let (_language, encoded) = rest.split_once('\'')?;
                if !charset.eq_ignore_ascii_case("utf-8") {
                    continue;
                }
                return percent_decode(encoded);
            }
            "filename" => plain = Some(value.trim().trim_matches('"').to_string()),
            _ => {}
        }
    }
    plain
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes[pos] == b'%' {
            let hex = std::str::from_utf8(bytes.get(pos + 1..pos + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            pos += 3;
        } else {
            out.push(bytes[pos]);
            pos += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A name safe to create in a directory: the last path component, with control
/// characters and separators replaced by `_`; `.` and `..` become empty.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    match cleaned.trim() {
        "." | ".." => String::new(),
        trimmed => trimmed.to_string(),
    }
}

/// Standard base64 with padding (the form of a `Repr-Digest` value).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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

    /// Downloads file `file_id` into `dir` as `{name}.partial`, renamed to its name once
    /// complete. The size must match `Content-Length` and stay within `max_bytes`; when
    /// the hub sends a `Repr-Digest` with `sha-256`, the bytes must match it. Returns
    /// the file's name, path, size and SHA-256 (hex). `received` is called with the
    /// bytes received so far and the file's size.
    pub async fn download(
        &self,
        file_id: &str,
        dir: &std::path::Path,
        max_bytes: u64,
        received_so_far: impl Fn(u64, u64) + Send,
    ) -> Result<DownloadedFile> {
        use futures_util::StreamExt;
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;

        let url = self.urls.route(&format!("v1/files/{file_id}"));
        let unreachable = |err: reqwest::Error| Error::Unreachable {
            hub: self.urls.display(),
            detail: describe_reqwest(&err),
        };
        let response = self
            .http
            .get(url.clone())
            .timeout(Duration::from_secs(3600))
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(unreachable)?;
            return Err(self.refusal(status, &bytes));
        }
        let headers = response.headers();
        let size = headers
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| Error::other(format!("{url} sent no Content-Length")))?;
        if size > max_bytes {
            return Err(Error::Refused {
                status: 413,
                code: "too_large".into(),
                message: format!(
                    "file {file_id} has {size} bytes, more than the {max_bytes} bytes left of the step's input budget"
                ),
            });
        }
        let name = headers
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|value| value.to_str().ok())
            .and_then(disposition_filename)
            .map(|name| safe_file_name(&name))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| file_id.to_string());
        let expected_digest = headers
            .get("repr-digest")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value.split(',').find_map(|item| {
                    let (algorithm, value) = item.trim().split_once('=')?;
                    (algorithm.trim() == "sha-256")
                        .then(|| value.trim().trim_matches(':').to_string())
                })
            });
        tokio::fs::create_dir_all(dir).await?;
        let partial = dir.join(format!(".{name}.partial"));
        let mut file = tokio::fs::File::create(&partial).await?;
        let mut hasher = sha2::Sha256::new();
        let mut received = 0u64;
        let mut stream = response.bytes_stream();
        let outcome: Result<()> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(unreachable)?;
                received += chunk.len() as u64;
                if received > size {
                    return Err(Error::other(format!(
                        "file {file_id} is longer than the {size} bytes announced"
                    )));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
                received_so_far(received, size);
            }
            file.flush().await?;
            if received != size {
                return Err(Error::other(format!(
                    "file {file_id} ended after {received} of {size} bytes"
                )));
            }
            Ok(())
        }
        .await;
        drop(file);
        let digest = hasher.finalize();
        let outcome = outcome.and_then(|()| match &expected_digest {
            Some(expected) if *expected != base64(&digest) => Err(Error::other(format!(
                "file {file_id} does not match its digest (sha-256 {expected}, received {})",
                base64(&digest)
            ))),
            _ => Ok(()),
        });
        if let Err(err) = outcome {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err);
        }
        let path = dir.join(&name);
        tokio::fs::rename(&partial, &path).await?;
        Ok(DownloadedFile {
            name,
            path,
            size_bytes: size,
            sha256: hex::encode(digest),
        })
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
        Err(self.refusal(status, &bytes))
    }

    /// The error of an answer that is not a success.
    fn refusal(&self, status: StatusCode, bytes: &[u8]) -> Error {
        let (code, message) = match serde_json::from_slice::<Envelope>(bytes) {
            Ok(envelope) => (envelope.error.code, envelope.error.message),
            Err(_) => (
                "unknown".to_string(),
                String::from_utf8_lossy(bytes).chars().take(200).collect(),
            ),
        };
        if status == StatusCode::UNAUTHORIZED {
            return Error::Unauthorized {
                hub: self.urls.display(),
                detail: message,
            };
        }
        if status.is_server_error() && code != "internal" && code != "unavailable" {
            // Not the hub's envelope: a proxy in front of it, or not a hub at all.
            return Error::Unreachable {
                hub: self.urls.display(),
                detail: format!("HTTP {status}"),
            };
        }
        Error::Refused {
            status: status.as_u16(),
            code,
            message,
        }
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

#[cfg(test)]
mod tests;
