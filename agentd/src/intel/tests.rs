//! The planning prompt and the tool definition, read as data.

use agenthub_protocol::{PlanAgent, PlanMember, PlanRequested, TaskInfo};
use uuid::Uuid;

use super::*;

fn request() -> PlanRequested {
    PlanRequested {
        seq: 1,
        plan_id: Uuid::now_v7(),
        task: TaskInfo {
            task_id: Uuid::now_v7(),
            title: "Quarterly report".into(),
            description: "Min breaks down the report, Duan reviews".into(),
            description_truncated: false,
            status: "draft".into(),
            creator_member_id: None,
            outcome: None,
        },
        round: 2,
        comment: Some("split the review".into()),
        steps: Vec::new(),
        agents: vec![PlanAgent {
            name: "min-laptop".into(),
            member: "min@example.com".into(),
            capabilities: vec!["docs".into()],
            online: true,
            load: 3,
        }],
        members: vec![PlanMember {
            email: "duan@example.com".into(),
            role: "member".into(),
        }],
    }
}

#[test]
fn the_plan_tool_is_a_tool_definition_with_an_object_schema() {
    let tool = plan_tool();
    assert_eq!(tool["name"], "submit_plan");
    assert_eq!(tool["input_schema"]["type"], "object");
    assert_eq!(
        tool["input_schema"]["properties"]["steps"]["items"]["required"],
        json!(["key", "title", "assignees"])
    );
}

#[test]
fn the_prompt_names_the_team_the_load_and_the_creators_comment() {
    let text = plan_prompt(&request(), "Min breaks down the report, Duan reviews");
    assert!(text.contains("Task: Quarterly report"), "{text}");
    assert!(
        text.contains("- min-laptop (min@example.com) capabilities [docs], online, load 3"),
        "{text}"
    );
    assert!(text.contains("- duan@example.com (member)"), "{text}");
    assert!(
        text.contains("plan round 2; the task's creator asked for another plan: split the review"),
        "{text}"
    );
}
