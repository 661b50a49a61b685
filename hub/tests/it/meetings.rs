//! Meeting steps on both backends: who is asked and how, the earliest common slot across
//! offsets, none fitting and a wider window, confirmation with an invitation that parses,
//! and every bad input refused with nothing changed.

use std::str::FromStr;

use agenthub::accounts::{Actor, Role};
use agenthub::ctx::{Ctx, Settings};
use agenthub::error::Error;
use agenthub::notifications::{self, ListQuery};
use agenthub::store::Store;
use agenthub::tasks::meeting::{self, MeetingView};
use agenthub::tasks::{self, NewMeeting, NewParticipant, NewStep, TaskFilter, TaskView};
use agenthub_protocol::{Interval, ServerFrame};
use icalendar::{Calendar, CalendarComponent, Component};

use crate::support::{Team, backend_test, events, expect_err, new_step, new_task, step_id, uuid};

const HOUR: i64 = 60 * 60 * 1000;
const DAY: i64 = 24 * HOUR;

/// 00:00 UTC of a Monday at least a week ahead, in ms.
fn monday() -> i64 {
    let now = agenthub::store::now_ms();
    let mut day = now - now.rem_euclid(DAY) + 7 * DAY;
    // 1970-01-01 was a Thursday.
    while (day / DAY + 3).rem_euclid(7) != 0 {
        day += DAY;
    }
    day
}

fn text(ms: i64) -> String {
    meeting::utc_text(ms)
}

fn interval(from: &str, to: &str) -> Interval {
    Interval {
        from: from.into(),
        to: to.into(),
    }
}

fn person(email: &str) -> NewParticipant {
    NewParticipant {
        email: email.into(),
        name: None,
    }
}

fn meeting_step(
    participants: Vec<NewParticipant>,
    minutes: u32,
    window: Option<(i64, i64)>,
) -> NewStep {
    NewStep {
        meeting: Some(NewMeeting {
            participants,
            duration_minutes: minutes,
            window,
        }),
        ..new_step("meet", &["min"], &[])
    }
}

/// aurora (min), duan (duan-bot), li (no agent) and a guest; a ready meeting step of an
/// hour on `day`.
async fn meeting_task(team: &Team, day: i64) -> (TaskView, String, Actor) {
    let li = team.add_member("li@example.com", Role::Member).await;
    let participants = vec![
        person("aurora@example.com"),
        person("duan@example.com"),
        person("li@example.com"),
        NewParticipant {
            email: "Pat@Outside.example".into(),
            name: Some("Pat Guest".into()),
        },
    ];
    let task = team
        .create(new_task(
            "Template review",
            vec![meeting_step(participants, 60, Some((day, day + DAY)))],
        ))
        .await;
    let step = step_id(&task, "meet");
    (task, step, li)
}

fn ctx_with_files(store: &Store, dir: &tempfile::TempDir) -> Ctx {
    Ctx::new(
        store.clone(),
        Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        },
    )
}

async fn view(team: &Team, step: &str) -> MeetingView {
    tasks::get_step(&team.ctx, &team.aurora, step)
        .await
        .unwrap()
        .meeting
        .expect("a meeting step shows its meeting")
}

async fn kinds_of(team: &Team, actor: &Actor) -> Vec<String> {
    notifications::list(
        &team.ctx,
        actor,
        &ListQuery {
            unread: true,
            limit: 50,
            ..ListQuery::default()
        },
    )
    .await
    .unwrap()
    .notifications
    .into_iter()
    .map(|item| item.kind)
    .collect()
}

fn invitation_times(ics: &str) -> (String, String, Vec<String>) {
    let calendar = Calendar::from_str(ics).expect("the invitation parses");
    let event = calendar
        .components
        .iter()
        .find_map(|component| match component {
            CalendarComponent::Event(event) => Some(event),
            _ => None,
        })
        .expect("one event");
    (
        event.property_value("DTSTART").unwrap().to_string(),
        event.property_value("DTEND").unwrap().to_string(),
        event
            .get_attendees()
            .into_iter()
            .map(|attendee| attendee.cal_address)
            .collect(),
    )
}

backend_test! {
    async fn a_meeting_asks_everyone_and_proposes_the_earliest_common_slot(store) {
        let team = Team::new(&store).await;
        let day = monday();
        let (task, step, li) = meeting_task(&team, day).await;

        // The agents are asked with the window; nobody gets the step to run.
        for agent in [&team.min.agent_id, &team.duan_bot.agent_id] {
            let frames = events(&store, agent).await;
            let asked: Vec<_> = frames
                .iter()
                .filter_map(|frame| match frame {
                    ServerFrame::AvailabilityRequested(asked) => Some(asked.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(asked.len(), 1, "{frames:?}");
            assert_eq!(asked[0].step_id, Some(uuid(&step)));
            assert_eq!(asked[0].duration_minutes, Some(60));
            assert_eq!(asked[0].window, Some(interval(&text(day), &text(day + DAY))));
            assert!(!frames.iter().any(|frame| matches!(frame, ServerFrame::StepReady(_))));
        }
        // Li has no agent: her inbox asks her; the guest is asked of the task's creator.
        assert!(kinds_of(&team, &li).await.contains(&"meeting.availability".to_string()));
        assert!(kinds_of(&team, &team.aurora).await.contains(&"meeting.availability".to_string()));
        // Aurora's agent's request is in her inbox as a meeting's, not as a question of work.
        let inbox = notifications::list(
            &team.ctx,
            &team.aurora,
            &ListQuery {
                unread: true,
                limit: 50,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
        let titles: Vec<&str> = inbox
            .notifications
            .iter()
            .filter(|item| item.kind == "availability.requested")
            .map(|item| item.title.as_str())
            .collect();
        assert_eq!(titles, ["When is min free to meet?"]);
        expect_err(
            tasks::claim_step(&team.ctx, &team.min, &step).await,
            "conflict",
            "meeting step is not claimed",
        );

        let requests: Vec<String> = view(&team, &step)
            .await
            .participants
            .iter()
            .map(|participant| participant.row.id.clone())
            .collect();
        let monday = text(day);
        let date = &monday[..10];
        // Aurora's agent: 09:00-17:00 in Tokyo (00:00-08:00 UTC).
        assert!(
            meeting::respond_as_agent(
                &team.ctx,
                &team.min,
                &requests[0],
                Some(&[interval(&format!("{date}T09:00:00+09:00"), &format!("{date}T17:00:00+09:00"))]),
            )
            .await
            .unwrap()
        );
        // Duan's: 09:00-17:00 in India (03:30-11:30 UTC).
        meeting::respond_as_agent(
            &team.ctx,
            &team.duan_bot,
            &requests[1],
            Some(&[interval(&format!("{date}T09:00:00+05:30"), &format!("{date}T17:00:00+05:30"))]),
        )
        .await
        .unwrap();
        // Li answers herself, the guest through aurora.
        meeting::respond(
            &team.ctx,
            &li,
            &step,
            "li@example.com",
            &[interval(&format!("{date}T04:30:00Z"), &format!("{date}T07:00:00Z"))],
        )
        .await
        .unwrap();
        let collecting = view(&team, &step).await;
        assert_eq!(collecting.meeting.status, "collecting");
        assert_eq!(collecting.participants[2].intervals.len(), 1);
        meeting::respond(
            &team.ctx,
            &team.aurora,
            &step,
            "pat@outside.example",
            &[
                interval(&format!("{date}T03:00:00Z"), &format!("{date}T04:00:00Z")),
                interval(&format!("{date}T05:00:00Z"), &format!("{date}T09:00:00Z")),
            ],
        )
        .await
        .unwrap();

        let proposed = view(&team, &step).await;
        assert_eq!(proposed.meeting.status, "proposed");
        assert_eq!(proposed.meeting.slot_from, Some(day + 5 * HOUR));
        assert_eq!(proposed.meeting.slot_to, Some(day + 6 * HOUR));
        // The answers keep their offsets.
        assert_eq!(proposed.participants[0].intervals[0].from, format!("{date}T09:00:00+09:00"));
        assert!(kinds_of(&team, &team.aurora).await.contains(&"meeting.proposed".to_string()));

        // Only the assignee confirms.
        let files = tempfile::tempdir().unwrap();
        let ctx = ctx_with_files(&store, &files);
        expect_err(meeting::confirm(&ctx, &team.duan, &step).await, "forbidden", "assignee");
        let scheduled = meeting::confirm(&ctx, &Actor::Agent(team.min.clone()), &step)
            .await
            .unwrap();
        assert_eq!(scheduled.meeting.status, "scheduled");
        let done = tasks::get_step(&team.ctx, &team.aurora, &step).await.unwrap().step;
        assert_eq!(done.status, "done");
        assert_eq!(team.task(&task.task.id).await.task.status, "done");
        let file_id = scheduled.meeting.file_id.clone().unwrap();
        assert_eq!(done.files, serde_json::to_string(&[&file_id]).unwrap());

        let monday_compact = date.replace('-', "");
        for agent in [&team.min.agent_id, &team.duan_bot.agent_id] {
            let frames = events(&store, agent).await;
            let invitation = frames
                .iter()
                .find_map(|frame| match frame {
                    ServerFrame::MeetingScheduled(scheduled) => Some(scheduled.clone()),
                    _ => None,
                })
                .expect("each agent gets the invitation");
            assert_eq!(invitation.slot, interval(&text(day + 5 * HOUR), &text(day + 6 * HOUR)));
            let (start, end, attendees) = invitation_times(&invitation.ics);
            assert_eq!(start, format!("{monday_compact}T050000Z"));
            assert_eq!(end, format!("{monday_compact}T060000Z"));
            assert_eq!(
                attendees,
                [
                    "mailto:aurora@example.com",
                    "mailto:duan@example.com",
                    "mailto:li@example.com",
                    "mailto:pat@outside.example",
                ]
            );
        }
        let (_, path) = agenthub::files::find(&ctx, &team.aurora, &file_id).await.unwrap();
        let ics = std::fs::read_to_string(path).unwrap();
        assert_eq!(invitation_times(&ics).0, format!("{monday_compact}T050000Z"));
        assert!(kinds_of(&team, &li).await.contains(&"meeting.scheduled".to_string()));

        // Scheduled: nothing changes any more.
        expect_err(
            meeting::respond(&team.ctx, &li, &step, "li@example.com", &[]).await,
            "conflict",
            "already scheduled",
        );
    }
}

backend_test! {
    async fn when_nothing_fits_a_wider_window_asks_everyone_again(store) {
        let team = Team::new(&store).await;
        let day = monday();
        let (_task, step, li) = meeting_task(&team, day).await;
        let requests: Vec<String> = view(&team, &step)
            .await
            .participants
            .iter()
            .map(|participant| participant.row.id.clone())
            .collect();
        let date = text(day)[..10].to_string();
        let morning = [interval(&format!("{date}T08:00:00Z"), &format!("{date}T10:00:00Z"))];
        let evening = [interval(&format!("{date}T18:00:00Z"), &format!("{date}T20:00:00Z"))];
        meeting::respond_as_agent(&team.ctx, &team.min, &requests[0], Some(&morning)).await.unwrap();
        meeting::respond_as_agent(&team.ctx, &team.duan_bot, &requests[1], Some(&evening)).await.unwrap();
        meeting::respond(&team.ctx, &li, &step, "li@example.com", &morning).await.unwrap();
        // An empty answer: the guest is not free at all.
        meeting::respond(&team.ctx, &team.aurora, &step, "pat@outside.example", &[]).await.unwrap();
        let none = view(&team, &step).await;
        assert_eq!(none.meeting.status, "no_fit");
        assert_eq!(none.meeting.slot_from, None);
        assert!(kinds_of(&team, &team.aurora).await.contains(&"meeting.no_fit".to_string()));
        let files = tempfile::tempdir().unwrap();
        expect_err(
            meeting::confirm(&ctx_with_files(&store, &files), &team.aurora, &step).await,
            "conflict",
            "no slot to confirm",
        );

        // Only the creator or an assignee widens it; then everyone is asked again.
        expect_err(
            meeting::change_window(&team.ctx, &li, &step, day, day + 3 * DAY).await,
            "forbidden",
            "window",
        );
        let before = events(&store, &team.duan_bot.agent_id).await.len();
        let wider = meeting::change_window(&team.ctx, &team.aurora, &step, day, day + 3 * DAY)
            .await
            .unwrap();
        assert_eq!(wider.meeting.status, "collecting");
        assert_eq!(wider.meeting.window_to, day + 3 * DAY);
        assert!(wider.participants.iter().all(|participant| participant.row.responded_at.is_none()));
        let after = events(&store, &team.duan_bot.agent_id).await;
        assert_eq!(after.len(), before + 1);
        match after.last().unwrap() {
            ServerFrame::AvailabilityRequested(asked) => {
                assert_eq!(asked.window, Some(interval(&text(day), &text(day + 3 * DAY))));
            }
            other => panic!("expected availability.requested, got {other:?}"),
        }
    }
}

backend_test! {
    async fn bad_meetings_are_refused_and_nothing_is_created(store) {
        let team = Team::new(&store).await;
        let day = monday();
        let now = agenthub::store::now_ms();
        let create = async |step: NewStep| -> Result<TaskView, Error> {
            tasks::create_task(&team.ctx, &team.aurora, new_task("Meet", vec![step])).await
        };
        let window = Some((day, day + DAY));
        expect_err(
            create(meeting_step(vec![person("ghost@example.com")], 30, window)).await,
            "invalid",
            "participant `ghost@example.com` is not a member of this workspace",
        );
        expect_err(
            create(meeting_step(vec![person("duan@example.com")], 0, window)).await,
            "invalid",
            "a meeting lasts 1 to 1440 minutes",
        );
        expect_err(
            create(meeting_step(vec![person("duan@example.com")], 30, Some((now - 2 * DAY, now - DAY)))).await,
            "invalid",
            "the window is in the past",
        );
        expect_err(
            create(meeting_step(vec![person("duan@example.com")], 30, Some((day + DAY, day)))).await,
            "invalid",
            "the window must end after it starts",
        );
        expect_err(
            create(meeting_step(vec![person("duan@example.com")], 120, Some((day, day + HOUR)))).await,
            "invalid",
            "shorter than the meeting",
        );
        expect_err(
            create(meeting_step(vec![person("duan@example.com"), person("DUAN@example.com")], 30, window)).await,
            "invalid",
            "named twice",
        );
        expect_err(
            create(meeting_step(vec![person("not-an-email")], 30, window)).await,
            "invalid",
            "not an email address",
        );
        expect_err(
            create(NewStep {
                approval_level: 1,
                approvers: vec!["duan@example.com".into()],
                ..meeting_step(vec![person("duan@example.com")], 30, window)
            })
            .await,
            "invalid",
            "takes no approval level",
        );
        let listed = tasks::list_tasks(&team.ctx, &team.aurora, &TaskFilter::newest(10))
            .await
            .unwrap();
        assert!(listed.is_empty(), "nothing was created");
    }
}

backend_test! {
    async fn bad_answers_are_refused_and_change_nothing(store) {
        let team = Team::new(&store).await;
        let day = monday();
        let (_task, step, li) = meeting_task(&team, day).await;
        let requests: Vec<String> = view(&team, &step)
            .await
            .participants
            .iter()
            .map(|participant| participant.row.id.clone())
            .collect();
        let date = text(day)[..10].to_string();
        let inside = [interval(&format!("{date}T08:00:00Z"), &format!("{date}T10:00:00Z"))];

        // An interval outside the window, inverted, or not RFC 3339.
        expect_err(
            meeting::respond(
                &team.ctx,
                &li,
                &step,
                "li@example.com",
                &[inside[0].clone(), interval(&format!("{date}T23:00:00Z"), &text(day + DAY + HOUR))],
            )
            .await,
            "invalid",
            "interval 1",
        );
        expect_err(
            meeting::respond(&team.ctx, &li, &step, "li@example.com", &[interval(&format!("{date}T10:00:00Z"), &format!("{date}T08:00:00Z"))]).await,
            "invalid",
            "ends before it starts",
        );
        expect_err(
            meeting::respond(&team.ctx, &li, &step, "li@example.com", &[interval("monday 9am", &format!("{date}T08:00:00Z"))]).await,
            "invalid",
            "RFC 3339",
        );
        // Someone who is not a participant, and a member answering for another.
        expect_err(
            meeting::respond(&team.ctx, &li, &step, "ghost@example.com", &inside).await,
            "invalid",
            "not a participant",
        );
        expect_err(
            meeting::respond(&team.ctx, &li, &step, "duan@example.com", &inside).await,
            "forbidden",
            "answer for themselves",
        );
        // An agent answering another agent's request, or without intervals.
        expect_err(
            meeting::respond_as_agent(&team.ctx, &team.duan_bot, &requests[0], Some(&inside)).await,
            "forbidden",
            "another agent",
        );
        expect_err(
            meeting::respond_as_agent(&team.ctx, &team.min, &requests[0], None).await,
            "invalid",
            "intervals",
        );
        let unchanged = view(&team, &step).await;
        assert_eq!(unchanged.meeting.status, "collecting");
        assert!(unchanged.participants.iter().all(|participant| participant.row.responded_at.is_none()));
        // A step that is not a meeting has none.
        assert!(tasks::get_step(&team.ctx, &team.aurora, &step).await.unwrap().meeting.is_some());
    }
}

backend_test! {
    async fn a_meeting_step_without_dependencies_starts_when_its_task_is_created(store) {
        let team = Team::new(&store).await;
        let day = monday();
        let participants = vec![person("aurora@example.com"), person("duan@example.com")];
        // The meeting alone, and beside a step that runs at once.
        for with_work in [false, true] {
            let mut steps = vec![meeting_step(participants.clone(), 30, Some((day, day + DAY)))];
            if with_work {
                steps.push(new_step("work", &["duan-bot"], &[]));
            }
            let before_min = events(&store, &team.min.agent_id).await.len();
            let before_duan = events(&store, &team.duan_bot.agent_id).await.len();
            let task = team.create(new_task("Kick-off", steps)).await;
            let meet = step_id(&task, "meet");
            let step = team.step(&meet).await;
            assert_eq!((step.status.as_str(), step.kind.as_str()), ("ready", "meeting"));
            assert_eq!(view(&team, &meet).await.meeting.status, "collecting");
            // Each participant's agent is asked; nobody gets the meeting to run.
            for (agent, before) in [(&team.min, before_min), (&team.duan_bot, before_duan)] {
                let frames = events(&store, &agent.agent_id).await[before..].to_vec();
                let asked = frames
                    .iter()
                    .filter(|frame| matches!(frame, ServerFrame::AvailabilityRequested(asked)
                        if asked.step_id == Some(uuid(&meet))))
                    .count();
                assert_eq!(asked, 1, "{frames:?}");
                let ready: Vec<String> = frames
                    .iter()
                    .filter_map(|frame| match frame {
                        ServerFrame::StepReady(ready) => Some(ready.step.step_id.to_string()),
                        _ => None,
                    })
                    .collect();
                let expected = if with_work && agent.agent_id == team.duan_bot.agent_id {
                    vec![step_id(&task, "work")]
                } else {
                    Vec::new()
                };
                assert_eq!(ready, expected, "{frames:?}");
            }
            expect_err(
                tasks::claim_step(&team.ctx, &team.min, &meet).await,
                "conflict",
                "meeting step is not claimed",
            );
            assert_eq!(team.step(&meet).await.status, "ready");
        }
    }
}
