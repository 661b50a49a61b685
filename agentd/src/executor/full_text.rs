//! The whole text of a step before it runs: the hub may cut a long task description or
//! an earlier step's output short in `step.ready` (carrying a bounded excerpt and a flag);
//! agentd then fetches the full text over REST (`GET /v1/tasks/{id}`,
//! `GET /v1/steps/{id}`) with its agent token.

use std::sync::Arc;

use agenthub_protocol::StepInfo;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::credentials::Secret;
use crate::executor::Failure;
use crate::hub::HubClient;
use crate::tls::HubUrls;

/// What of a step was cut short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Truncated {
    pub task_description: bool,
    /// The earlier steps whose outputs were cut short.
    pub outputs: Vec<Uuid>,
}

impl Truncated {
    /// What the hub flagged in `step`.
    pub fn of(step: &StepInfo) -> Truncated {
        Truncated {
            task_description: step.task_description_truncated,
            outputs: step
                .inputs
                .iter()
                .filter(|output| output.truncated)
                .map(|output| output.step_id)
                .collect(),
        }
    }

    /// Whether anything is missing.
    pub fn any(&self) -> bool {
        self.task_description || !self.outputs.is_empty()
    }
}

/// How agentd reaches the hub's REST API from the daemon: the client is built the
/// first time a step needs it.
#[derive(Debug, Clone)]
pub struct HubAccess {
    urls: HubUrls,
    token: Secret,
    ca_cert: Option<std::path::PathBuf>,
    client: Arc<OnceCell<HubClient>>,
}

impl HubAccess {
    pub fn new(urls: HubUrls, token: Secret, ca_cert: Option<std::path::PathBuf>) -> HubAccess {
        HubAccess {
            urls,
            token,
            ca_cert,
            client: Arc::new(OnceCell::new()),
        }
    }

    /// The REST client.
    pub async fn client(&self) -> crate::error::Result<&HubClient> {
        self.client
            .get_or_try_init(|| async {
                let tls = crate::tls::client_config(self.ca_cert.as_deref())?;
                HubClient::new(self.urls.clone(), self.token.clone(), tls)
            })
            .await
    }
}

#[derive(Deserialize)]
struct TaskText {
    description: String,
}

#[derive(Deserialize)]
struct StepText {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    result: Value,
}

/// Replaces what `truncated` names in `step` with the full text from the hub.
pub async fn complete(
    step: &mut StepInfo,
    truncated: &Truncated,
    hub: &HubClient,
) -> Result<(), Failure> {
    let unavailable = |what: String, err: crate::error::Error| {
        Failure::retryable(format!(
            "the hub sent {what} cut short and agentd cannot fetch it in full: {err}"
        ))
    };
    if truncated.task_description {
        let task: TaskText = hub
            .get(&format!("v1/tasks/{}", step.task_id))
            .await
            .map_err(|err| unavailable("the task's description".into(), err))?;
        step.task_description = task.description;
    }
    for output in step
        .inputs
        .iter_mut()
        .filter(|output| truncated.outputs.contains(&output.step_id))
    {
        let full: StepText = hub
            .get(&format!("v1/steps/{}", output.step_id))
            .await
            .map_err(|err| unavailable(format!("the output of \"{}\"", output.title), err))?;
        output.summary = full.summary;
        output.result = full.result;
    }
    Ok(())
}
