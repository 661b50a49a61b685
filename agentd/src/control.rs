//! The local control socket of a running `agentd run` (Unix only): `agentd status` reads
//! the live state through it and `agentd done` hands a manual step's result to it.
//! One JSON request per connection, one JSON answer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::daemon::StatusSnapshot;
use crate::error::{Error, Result};
use crate::executor::ManualResult;
use crate::executor::manual::Waiters;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Status,
    Done {
        step_id: Uuid,
        result: Value,
        summary: Option<String>,
    },
}

/// The answer on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum ControlAnswer {
    Status { status: Value },
    Done,
    Error { message: String },
}

/// Serves the control socket until the returned task is aborted.
#[cfg(unix)]
pub fn serve(
    path: &Path,
    status: Arc<Mutex<StatusSnapshot>>,
    waiters: Waiters,
) -> Result<tokio::task::JoinHandle<()>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;

    if path.exists() {
        // A socket left by a process that is gone; a live one answers.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::config(format!(
                "another `agentd run` is already running with this state directory ({})",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)
        .map_err(|err| Error::other(format!("cannot listen on {}: {err}", path.display())))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read);
            let read_line = reader.read_line(&mut line);
            if tokio::time::timeout(std::time::Duration::from_secs(5), read_line)
                .await
                .is_err()
            {
                continue;
            }
            let answer = match serde_json::from_str::<ControlRequest>(&line) {
                Ok(ControlRequest::Status) => {
                    let snapshot = status.lock().expect("status lock").clone();
                    ControlAnswer::Status {
                        status: serde_json::to_value(snapshot).expect("status encodes"),
                    }
                }
                Ok(ControlRequest::Done {
                    step_id,
                    result,
                    summary,
                }) => {
                    if waiters.finish(step_id, ManualResult { result, summary }) {
                        ControlAnswer::Done
                    } else {
                        ControlAnswer::Error {
                            message: format!(
                                "no manual step {step_id} is waiting on this agent (waiting: {})",
                                list(&waiters.waiting())
                            ),
                        }
                    }
                }
                Err(err) => ControlAnswer::Error {
                    message: format!("bad request: {err}"),
                },
            };
            let mut bytes = serde_json::to_vec(&answer).expect("answers encode");
            bytes.push(b'\n');
            let _ = write.write_all(&bytes).await;
        }
    }))
}

/// Without Unix sockets there is no control socket.
#[cfg(not(unix))]
pub fn serve(
    _path: &Path,
    _status: Arc<Mutex<StatusSnapshot>>,
    _waiters: Waiters,
) -> Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async {}))
}

/// Sends one request to a running daemon; `Ok(None)` when none is running.
#[cfg(unix)]
pub async fn request(path: &Path, request: &ControlRequest) -> Result<Option<ControlAnswer>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let Ok(stream) = tokio::net::UnixStream::connect(path).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request).expect("requests encode");
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|err| Error::other(format!("unreadable answer from the running agentd: {err}")))
}

/// Without Unix sockets no daemon can be reached.
#[cfg(not(unix))]
pub async fn request(_path: &Path, _request: &ControlRequest) -> Result<Option<ControlAnswer>> {
    Ok(None)
}

fn list(ids: &[Uuid]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
