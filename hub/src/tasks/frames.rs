//! Builds the protocol events of tasks and steps from rows.

use agenthub_protocol::{
    ActorRef, ServerFrame, StepCompleted, StepInfo, StepOutput, StepReady, StepRef, StepRevoked,
    TaskCreated, TaskInfo, TaskOutcome, TaskUpdated,
};
use serde_json::Value;
use uuid::Uuid;

use crate::content::{self, EXCERPT_BYTES, MAX_DEPENDENCY_OUTPUT_BYTES};
use crate::error::Result;
use crate::store::Db;
use crate::tasks::model::{self, Step, Task};
use crate::tasks::settle::Outcome;

pub(crate) fn uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap_or_default()
}

fn json(text: Option<&str>) -> Value {
    text.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

fn task_info(task: &Task) -> TaskInfo {
    let (description, description_truncated) = content::excerpt(&task.description, EXCERPT_BYTES);
    TaskInfo {
        task_id: uuid(&task.id),
        title: task.title.clone(),
        description: description.to_string(),
        description_truncated,
        status: task.status.clone(),
        creator_member_id: task.creator_member_id.as_deref().map(uuid),
        outcome: Outcome::of(task).map(|outcome| TaskOutcome {
            status: outcome.status.as_str().to_string(),
            step_id: outcome.step.as_ref().map(|(id, _)| uuid(id)),
            step_key: outcome.step.map(|(_, key)| key),
            reason: outcome.reason,
            by: outcome.by.map(|by| ActorRef {
                kind: by.kind,
                id: by.id.as_deref().map(uuid),
                name: by.name,
            }),
        }),
    }
}

pub(crate) fn task_created(task: &Task) -> ServerFrame {
    ServerFrame::TaskCreated(TaskCreated {
        seq: 0,
        task: task_info(task),
        your_steps: Vec::new(),
    })
}

pub(crate) fn task_updated(task: &Task) -> ServerFrame {
    ServerFrame::TaskUpdated(TaskUpdated {
        seq: 0,
        task: task_info(task),
    })
}

/// `step.ready` with the task context and the outputs of the step's dependencies. The
/// task's description is an excerpt; dependency outputs are carried whole while they fit
/// in [`MAX_DEPENDENCY_OUTPUT_BYTES`], the rest as `truncated` references (summary
/// excerpt, no result or files), so the event stays small however large the task grew.
pub(crate) async fn step_ready(db: &mut Db<'_>, task: &Task, step: &Step) -> Result<ServerFrame> {
    let deps = model::dependencies_of(db, std::slice::from_ref(&step.id)).await?;
    step_ready_after(db, task, step, deps).await
}

/// [`step_ready`] for a step whose dependencies, (step id, depends-on id), are known.
pub(crate) async fn step_ready_after(
    db: &mut Db<'_>,
    task: &Task,
    step: &Step,
    deps: Vec<(String, String)>,
) -> Result<ServerFrame> {
    let mut inputs = Vec::new();
    if !deps.is_empty() {
        let siblings = model::steps_of_task(db, &task.id).await?;
        let mut budget = MAX_DEPENDENCY_OUTPUT_BYTES;
        for (_, dep_id) in deps {
            if let Some(dep) = siblings.iter().find(|sibling| sibling.id == dep_id) {
                let output = StepOutput {
                    step_id: uuid(&dep.id),
                    title: dep.title.clone(),
                    summary: dep.summary.clone(),
                    result: json(dep.result.as_deref()),
                    files: serde_json::from_str(&dep.files).unwrap_or_default(),
                    truncated: false,
                };
                let size = content::encoded_size(&output);
                if size <= budget {
                    budget -= size;
                    inputs.push(output);
                    continue;
                }
                // A reference with a summary excerpt while that fits, else a bare one.
                let mut reference = StepOutput {
                    summary: output
                        .summary
                        .as_deref()
                        .map(|summary| content::excerpt(summary, EXCERPT_BYTES).0.to_string()),
                    result: Value::Null,
                    files: Vec::new(),
                    truncated: true,
                    ..output
                };
                let size = content::encoded_size(&reference);
                if size <= budget {
                    budget -= size;
                } else {
                    reference.summary = None;
                }
                inputs.push(reference);
            }
        }
    }
    let (task_description, task_description_truncated) =
        content::excerpt(&task.description, EXCERPT_BYTES);
    Ok(ServerFrame::StepReady(StepReady {
        seq: 0,
        step: StepInfo {
            step_id: uuid(&step.id),
            task_id: uuid(&task.id),
            task_title: task.title.clone(),
            task_description: task_description.to_string(),
            task_description_truncated,
            key: step.key.clone(),
            title: step.title.clone(),
            description: step.description.clone(),
            attempt: step.attempt as u32,
            executor: step.executor.clone(),
            input: json(Some(&step.input)),
            approval_level: step.approval_level as u8,
            required_capabilities: serde_json::from_str(&step.required_capabilities)
                .unwrap_or_default(),
            expected_outputs: step.expected_outputs.clone(),
            inputs,
            rework_comment: step.rework_comment.clone(),
        },
    }))
}

pub(crate) fn step_revoked(step: &Step, attempt: i32, reason: &str) -> ServerFrame {
    ServerFrame::StepRevoked(StepRevoked {
        seq: 0,
        step_id: uuid(&step.id),
        task_id: uuid(&step.task_id),
        attempt: attempt as u32,
        reason: reason.to_string(),
    })
}

pub(crate) fn step_completed(step: &Step, next: Vec<StepRef>) -> ServerFrame {
    ServerFrame::StepCompleted(StepCompleted {
        seq: 0,
        step_id: uuid(&step.id),
        task_id: uuid(&step.task_id),
        title: step.title.clone(),
        summary: step.summary.clone(),
        next,
    })
}

pub(crate) fn step_ref(step: &Step) -> StepRef {
    StepRef {
        step_id: uuid(&step.id),
        title: step.title.clone(),
        status: step.status.clone(),
    }
}
