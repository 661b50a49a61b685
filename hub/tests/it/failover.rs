//! Steps assigned to a member (`member:<email>`): any of the person's machines may take
//! them, a lease lost on one is offered to the others, a machine added later joins, and
//! the agents list says which machine holds what.

use agenthub::agents;
use agenthub::error::Error;
use agenthub::tasks::{self, NewStep, WorkflowChange, WorkflowOp};
use agenthub_protocol::ServerFrame;

use crate::support::{
    Team, backend_test, events, expect_err, expire_lease, new_step, new_task, step_id, submit,
};

/// The attempts of the `step.ready` events `agent_id` received for `step`.
async fn ready_attempts(store: &agenthub::store::Store, agent_id: &str, step: &str) -> Vec<u32> {
    events(store, agent_id)
        .await
        .into_iter()
        .filter_map(|frame| match frame {
            ServerFrame::StepReady(event) if event.step.step_id.to_string() == step => {
                Some(event.step.attempt)
            }
            _ => None,
        })
        .collect()
}

fn names(assignees: &[(String, String)]) -> Vec<&str> {
    let mut names: Vec<&str> = assignees.iter().map(|(_, name)| name.as_str()).collect();
    names.sort();
    names
}

backend_test!(
    /// Aurora has a laptop (`min`) and a desktop: a step assigned to her reaches both; the
    /// laptop takes it and goes silent; the lease expiry offers it again to both, the
    /// desktop finishes it; the agents list shows the desktop holding it meanwhile.
    async fn a_step_assigned_to_a_member_fails_over_to_their_other_machine(store) {
        let team = Team::new(&store).await;
        let desktop = team
            .add_agent("aurora-desktop", "aurora@example.com", &["docs"], 2)
            .await;
        let view = team
            .create(new_task(
                "Report",
                vec![new_step("write", &["member:aurora@example.com"], &[])],
            ))
            .await;
        let step = step_id(&view, "write");
        let write = &view.steps[0];
        assert_eq!(names(&write.assignees), ["aurora-desktop", "min"]);
        assert_eq!(
            write.assigned_members,
            [(team.aurora.member_id().to_string(), "aurora@example.com".to_string())]
        );
        assert_eq!(ready_attempts(&store, &team.min.agent_id, &step).await, [1]);
        assert_eq!(ready_attempts(&store, &desktop.agent_id, &step).await, [1]);
        // Duan's agent is not one of Aurora's machines.
        assert!(
            ready_attempts(&store, &team.duan_bot.agent_id, &step)
                .await
                .is_empty()
        );

        expire_lease(&team, &team.min, &step).await;
        assert_eq!(ready_attempts(&store, &desktop.agent_id, &step).await, [1, 2]);
        let claimed = tasks::claim_step(&team.ctx, &desktop, &step).await.unwrap();
        assert_eq!(claimed.attempt, 2);

        let listed = agents::list_agents(&store, &team.ctx.presence, &team.workspace_id)
            .await
            .unwrap();
        let holds = |name: &str| {
            listed
                .iter()
                .find(|view| view.agent.name == name)
                .map(|view| {
                    view.holds
                        .iter()
                        .map(|held| (held.step_id.clone(), held.status.clone()))
                        .collect::<Vec<_>>()
                })
                .unwrap()
        };
        assert_eq!(holds("aurora-desktop"), [(step.clone(), "claimed".to_string())]);
        assert!(holds("min").is_empty());

        submit(&team.ctx, &desktop, &step, claimed.attempt)
            .await
            .unwrap();
        assert_eq!(team.step(&step).await.status, "done");
    }
);

backend_test!(
    /// A machine Aurora registers after the task was created joins her open steps: the
    /// ready one is pushed to it, and it may claim it; steps of other people are not
    /// offered to it.
    async fn a_machine_added_later_joins_the_members_open_steps(store) {
        let team = Team::new(&store).await;
        let view = team
            .create(new_task(
                "Report",
                vec![
                    new_step("write", &["member:aurora@example.com"], &[]),
                    new_step("review", &["duan-bot"], &["write"]),
                ],
            ))
            .await;
        let write = step_id(&view, "write");
        let review = step_id(&view, "review");

        let phone = agents::register_agent(&team.ctx, &team.aurora, "aurora-phone", &[], 1)
            .await
            .unwrap();
        assert_eq!(ready_attempts(&store, &phone.agent.id, &write).await, [1]);
        let phone = agents::authenticate_token(&store, &phone.token)
            .await
            .unwrap();
        let view = team.task(&view.task.id).await;
        assert_eq!(names(&view.steps[0].assignees), ["aurora-phone", "min"]);
        assert_eq!(names(&view.steps[1].assignees), ["duan-bot"]);
        let claimed = tasks::claim_step(&team.ctx, &phone, &write).await.unwrap();
        submit(&team.ctx, &phone, &write, claimed.attempt)
            .await
            .unwrap();
        assert!(
            ready_attempts(&store, &phone.agent_id, &review)
                .await
                .is_empty()
        );
        // A step Aurora's agents were named on one by one is not hers to share.
        let explicit = team
            .create(new_task("Notes", vec![new_step("jot", &["min"], &[])]))
            .await;
        let jot = step_id(&explicit, "jot");
        let laptop = agents::register_agent(&team.ctx, &team.aurora, "aurora-laptop2", &[], 1)
            .await
            .unwrap();
        assert!(
            ready_attempts(&store, &laptop.agent.id, &jot)
                .await
                .is_empty()
        );
    }
);

backend_test!(
    /// Only the member's machines that have the step's required capabilities are
    /// assigned; an agent named both itself and through its member is assigned once; a
    /// workflow change can assign a member too.
    async fn member_assignment_respects_capabilities_and_names_each_agent_once(store) {
        let team = Team::new(&store).await;
        team.add_agent("aurora-desktop", "aurora@example.com", &["docs"], 2)
            .await;
        let mut shell_step = new_step("build", &["member:aurora@example.com", "min"], &[]);
        shell_step.required_capabilities = vec!["shell".into()];
        let view = team
            .create(new_task(
                "Build",
                vec![shell_step, new_step("notes", &["duan-bot"], &[])],
            ))
            .await;
        assert_eq!(names(&view.steps[0].assignees), ["min"]);
        assert_eq!(view.steps[0].assigned_members.len(), 1);

        let notes = step_id(&view, "notes");
        let changed = tasks::change_workflow(
            &team.ctx,
            &team.aurora,
            &view.task.id,
            WorkflowChange {
                reason: "Aurora takes the notes".into(),
                operations: vec![WorkflowOp::SetAssignees {
                    step: "notes".into(),
                    assignees: vec!["member:aurora@example.com".into()],
                }],
            },
        )
        .await
        .unwrap();
        assert_eq!(names(&changed.steps[1].assignees), ["aurora-desktop", "min"]);
        let revoked = events(&store, &team.duan_bot.agent_id)
            .await
            .into_iter()
            .any(|frame| matches!(frame, ServerFrame::StepRevoked(event) if event.step_id.to_string() == notes));
        assert!(revoked, "duan-bot hears that the notes are no longer his");
    }
);

backend_test!(
    /// A member that does not exist, one of another workspace, and one without a machine
    /// able to take the step are refused at creation, naming the field; nothing is created.
    async fn member_assignees_that_cannot_take_the_step_are_refused(store) {
        let team = Team::new(&store).await;
        Team::in_workspace(&store, "other").await;
        team.add_member("lena@example.com", agenthub::accounts::Role::Member)
            .await;
        let create = |assignee: &str, required: &[&str]| {
            let mut step: NewStep = new_step("s", &[assignee], &[]);
            step.required_capabilities = required.iter().map(|cap| cap.to_string()).collect();
            tasks::create_task(&team.ctx, &team.aurora, new_task("T", vec![step]))
        };
        let err = expect_err(
            create("member:nobody@example.com", &[]).await,
            "invalid",
            "`member:nobody@example.com` is not a member of this workspace",
        );
        assert!(
            matches!(&err, Error::Invalid { field: Some(field), .. } if field == "steps.assignees"),
            "{err:?}"
        );
        // Lena has no machine yet.
        expect_err(
            create("member:lena@example.com", &[]).await,
            "invalid",
            "member `lena@example.com` has no agent to take it",
        );
        expect_err(
            create("member:duan@example.com", &["shell"]).await,
            "invalid",
            "has no agent with the capabilities shell",
        );
        let listed = tasks::list_tasks(&team.ctx, &team.aurora, &tasks::TaskFilter::newest(100))
            .await
            .unwrap();
        assert!(listed.is_empty(), "nothing was created: {listed:?}");
    }
);
