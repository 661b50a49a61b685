//! What the notifications say and which frame a click sends.

use agenthub_protocol::{
    ActorRef, ApprovalRequested, ClientFrame, Decision, InputRequested, TaskInfo, TaskOutcome,
    TaskUpdated,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    DecisionTarget, TaskEnd, approval_notice, decision_frame, notification_notice, question_notice,
    task_end, task_end_notice,
};
use crate::hub::Notification;

#[test]
fn an_approval_shows_the_step_and_its_result_and_decides_by_approval_id() {
    let approval_id = Uuid::now_v7();
    let notice = approval_notice(&ApprovalRequested {
        seq: 3,
        approval_id,
        step_id: Uuid::now_v7(),
        task_id: Uuid::now_v7(),
        task_title: "Quarterly report".into(),
        step_title: "Draft the outline".into(),
        approval_level: 1,
        attempt: 2,
        digest: "sha256:00".into(),
        summary: Some("Three sections".into()),
        result: json!({"pages": 3}),
        files: Vec::new(),
        fits: None,
    });
    assert_eq!(notice.title, "Approve \"Draft the outline\"?");
    assert_eq!(
        notice.body,
        "Task: Quarterly report\nSummary: Three sections\nResult: {\"pages\":3}"
    );
    let target = DecisionTarget::Approval {
        approval_id,
        digest: "sha256:00".into(),
    };
    assert_eq!(notice.decision, Some(target.clone()));
    let Some(ClientFrame::ApprovalDecide(reject)) = decision_frame(target, "reject") else {
        panic!("reject decides the approval");
    };
    assert_eq!(reject.decision, Decision::Reject);
    assert_eq!(
        reject.digest.as_deref(),
        Some("sha256:00"),
        "a click decides on the result it showed"
    );
    assert!(reject.comment.is_some(), "a rejection carries a comment");
}

#[test]
fn an_approval_says_when_its_agent_judged_the_result_not_to_fit() {
    let requested = |fits| ApprovalRequested {
        seq: 5,
        approval_id: Uuid::now_v7(),
        step_id: Uuid::now_v7(),
        task_id: Uuid::now_v7(),
        task_title: "Quarterly report".into(),
        step_title: "Draft the outline".into(),
        approval_level: 1,
        attempt: 1,
        digest: "sha256:00".into(),
        summary: None,
        result: serde_json::Value::Null,
        files: Vec::new(),
        fits,
    };
    assert_eq!(
        approval_notice(&requested(Some(false))).body,
        "Task: Quarterly report\nIts agent says the result does not fit the task."
    );
    for fits in [Some(true), None] {
        assert_eq!(
            approval_notice(&requested(fits)).body,
            "Task: Quarterly report"
        );
    }
}

#[test]
fn a_tool_call_question_gets_actions_and_other_questions_say_how_to_answer() {
    let request_id = Uuid::now_v7();
    let mut question = InputRequested {
        seq: 4,
        input_request_id: request_id,
        step_id: Uuid::now_v7(),
        task_id: Uuid::now_v7(),
        question: "Allow run_shell `make deploy`?".into(),
        options: vec!["approve".into(), "reject".into()],
    };
    let notice = question_notice(&question);
    assert_eq!(notice.title, "Tool call wants approval");
    assert_eq!(notice.body, "Allow run_shell `make deploy`?");
    assert_eq!(notice.decision, Some(DecisionTarget::ToolCall(request_id)));
    let Some(ClientFrame::InputAnswer(answer)) =
        decision_frame(DecisionTarget::ToolCall(request_id), "approve")
    else {
        panic!("approve answers the question");
    };
    assert_eq!(answer.answer, "approve");
    assert_eq!(
        decision_frame(DecisionTarget::ToolCall(request_id), "default"),
        None
    );

    question.question = "Which quarter?".into();
    question.options = vec!["Q3".into(), "Q4".into()];
    let notice = question_notice(&question);
    assert_eq!(notice.decision, None);
    assert!(
        notice
            .body
            .contains(&format!("agentd answer {request_id} TEXT")),
        "{}",
        notice.body
    );
}

fn end(status: &str) -> TaskEnd {
    TaskEnd {
        task_id: Uuid::now_v7(),
        title: "Quarterly report".into(),
        status: status.into(),
        step_key: None,
        reason: None,
        by: None,
    }
}

#[test]
fn a_finished_task_says_so_without_actions() {
    let notice = task_end_notice(&end("done"));
    assert_eq!(notice.title, "Task finished: Quarterly report");
    assert_eq!(notice.body, "");
    assert_eq!(notice.decision, None);
}

#[test]
fn a_failed_task_names_the_step_the_reason_and_who() {
    let notice = task_end_notice(&TaskEnd {
        step_key: Some("draft".into()),
        reason: Some("`make outline` exited with status 2".into()),
        by: Some("min-laptop".into()),
        ..end("failed")
    });
    assert_eq!(notice.title, "Task failed: Quarterly report");
    assert_eq!(
        notice.body,
        "step `draft` failed: `make outline` exited with status 2 (by min-laptop)"
    );
}

#[test]
fn a_cancelled_task_says_why_and_who() {
    let notice = task_end_notice(&TaskEnd {
        reason: Some("the director cancelled the report".into()),
        by: Some("aurora@example.com".into()),
        ..end("cancelled")
    });
    assert_eq!(notice.title, "Task cancelled: Quarterly report");
    assert_eq!(
        notice.body,
        "the director cancelled the report (by aurora@example.com)"
    );
}

#[test]
fn a_task_updated_frame_gives_the_end_with_its_outcome() {
    let task_id = Uuid::now_v7();
    let updated = |status: &str, outcome: Option<TaskOutcome>| TaskUpdated {
        seq: 9,
        task: TaskInfo {
            task_id,
            title: "Quarterly report".into(),
            description: String::new(),
            description_truncated: false,
            status: status.into(),
            creator_member_id: None,
            outcome,
        },
    };
    assert_eq!(task_end(&updated("paused", None)), None);
    let end = task_end(&updated(
        "failed",
        Some(TaskOutcome {
            status: "failed".into(),
            step_id: Some(Uuid::now_v7()),
            step_key: Some("draft".into()),
            reason: Some("no key".into()),
            by: Some(ActorRef {
                kind: "agent".into(),
                id: Some(Uuid::now_v7()),
                name: Some("min-laptop".into()),
            }),
        }),
    ))
    .expect("a failed task ended");
    assert_eq!(
        task_end_notice(&end).body,
        "step `draft` failed: no key (by min-laptop)"
    );
    let end = task_end(&updated("done", None)).expect("a done task ended");
    assert_eq!((end.task_id, end.step_key), (task_id, None));
}

fn hub_notification(kind: &str, subject_id: Option<Uuid>, data: serde_json::Value) -> Notification {
    Notification {
        id: Uuid::now_v7().to_string(),
        kind: kind.into(),
        priority: "action".into(),
        title: "Approve \"Draft the outline\"?".into(),
        body: "Task: Quarterly report".into(),
        task_id: None,
        step_id: None,
        subject_id: subject_id.map(|id| id.to_string()),
        data,
        created_at: "2026-12-03T07:30:00Z".into(),
        read_at: None,
        resolved_at: None,
        unread: true,
    }
}

#[test]
fn an_unread_notification_from_the_hub_decides_what_it_names_and_remembers_its_id() {
    let approval_id = Uuid::now_v7();
    let notification = hub_notification(
        "approval.requested",
        Some(approval_id),
        json!({"attempt": 2, "digest": "sha256:ab"}),
    );
    let (seen_id, notice) = notification_notice(&notification).unwrap();
    assert_eq!(
        seen_id, approval_id,
        "known by its approval, as the event is"
    );
    assert_eq!(notice.title, "Approve \"Draft the outline\"?");
    assert_eq!(
        notice.decision,
        Some(DecisionTarget::Approval {
            approval_id,
            digest: "sha256:ab".into()
        })
    );
    assert_eq!(
        notice.notification_id.as_deref(),
        Some(notification.id.as_str())
    );

    let request_id = Uuid::now_v7();
    let tool_call = hub_notification(
        "input.requested",
        Some(request_id),
        json!({"question": "run_shell `ls`", "options": ["approve", "reject"]}),
    );
    let (_, notice) = notification_notice(&tool_call).unwrap();
    assert_eq!(notice.decision, Some(DecisionTarget::ToolCall(request_id)));
    assert_eq!(notice.body, "run_shell `ls`");

    let other = hub_notification("webhook.disabled", None, json!({}));
    let (seen_id, notice) = notification_notice(&other).unwrap();
    assert_eq!(seen_id.to_string(), other.id);
    assert_eq!(notice.decision, None);
}
