//! A meeting step end to end: the real hub asks three agents and one person outside the
//! workspace when they are free; two daemons answer from their `[calendar]` (one with an
//! ICS file) in their own UTC offsets, the third agent's person answers for herself and
//! the guest with `agentd answer --free`; the hub proposes the earliest common slot, the assignee's member
//! confirms, and every participant gets an invitation that parses as iCalendar. And a
//! person who is not free at all (`agentd answer --not-free`): no slot is proposed.

use std::str::FromStr;
use std::time::Duration;

use icalendar::{Calendar, CalendarComponent, Component};
use reqwest::Method;
use serde_json::{Value, json};
use time::{Date, OffsetDateTime, Weekday};

use crate::hub::Hub;
use crate::support::{Agentd, spawn, text};

/// Runs `agentd ARGS` to completion without blocking the runtime.
async fn agentd_cmd(agentd: &Agentd, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::from(agentd.command(args));
    cmd.kill_on_drop(true);
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("agentd answers in time")
        .expect("run agentd")
}

const WAIT: Duration = Duration::from_secs(30);

/// A Monday at least a week ahead.
fn monday() -> Date {
    let mut day = OffsetDateTime::now_utc().date() + time::Duration::days(7);
    while day.weekday() != Weekday::Monday {
        day = day.next_day().unwrap();
    }
    day
}

fn ymd(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn compact(day: Date) -> String {
    ymd(day).replace('-', "")
}

/// Starts a daemon for `token` with `config` (TOML) and returns it.
fn daemon(hub: &Hub, token: &str, config: &str) -> (Agentd, tokio::process::Child) {
    let agentd = Agentd::new();
    agentd.write_config(config);
    agentd.login_with(&hub.url, token);
    let child = spawn(&agentd, &["run", "--no-notify"]);
    (agentd, child)
}

/// Registers the owner's agent `name` and returns its token.
async fn register_agent(hub: &Hub, name: &str) -> String {
    let (status, registered) = hub
        .rest
        .call(
            Method::POST,
            "/v1/agents",
            &hub.team.owner_key,
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    registered["token"].as_str().unwrap().to_string()
}

/// Creates, as the owner, a task of one meeting step `title` assigned to `assignee`:
/// `minutes` long with `participants` (JSON), within `day` (UTC). Returns the step's id.
async fn create_meeting(
    hub: &Hub,
    title: &str,
    assignee: &str,
    participants: Value,
    minutes: u32,
    day: Date,
) -> String {
    let window = json!({"from": format!("{}T00:00:00Z", ymd(day)),
                        "to": format!("{}T00:00:00+00:00", ymd(day.next_day().unwrap()))});
    hub.rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": title, "assignees": [assignee], "kind": "meeting",
                   "meeting": {"participants": participants, "duration_minutes": minutes,
                               "window": window}}),
        )
        .await
}

async fn meeting_of(hub: &Hub, step_id: &str) -> Value {
    hub.rest.step(&hub.team.owner_key, step_id).await["meeting"].clone()
}

/// Polls the meeting until `done` holds.
async fn wait_meeting(
    hub: &Hub,
    step_id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let meeting = meeting_of(hub, step_id).await;
        if done(&meeting) {
            return meeting;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the meeting did not become {what}: {meeting:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn parse_invitation(ics: &str) -> (String, String, Vec<String>) {
    let calendar = Calendar::from_str(ics).expect("the invitation parses as iCalendar");
    let events: Vec<_> = calendar
        .components
        .iter()
        .filter_map(|component| match component {
            CalendarComponent::Event(event) => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1, "{ics}");
    let event = events[0];
    let attendees = event
        .get_attendees()
        .into_iter()
        .map(|attendee| attendee.cal_address)
        .collect();
    (
        event.property_value("DTSTART").unwrap().to_string(),
        event.property_value("DTEND").unwrap().to_string(),
        attendees,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agents_and_a_guest_meet_at_the_earliest_slot_that_suits_everyone() {
    let hub = Hub::start().await;
    let day = monday();
    let sunday = day.previous_day().unwrap();
    // A third agent, aurora's, whose daemon has no calendar: aurora answers herself.
    let aurora_token = register_agent(&hub, "aurora-desk").await;

    // Min works 09:00-17:00 in Tokyo (00:00-08:00 UTC) and is busy until 12:00 there.
    let ics_dir = tempfile::tempdir().unwrap();
    let ics_path = ics_dir.path().join("min.ics");
    std::fs::write(
        &ics_path,
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:standup\r\n\
             DTSTAMP:20260101T000000Z\r\nDTSTART:{d}T000000Z\r\nDTEND:{d}T030000Z\r\n\
             SUMMARY:Board meeting\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            d = compact(day)
        ),
    )
    .unwrap();
    let (_min, _min_daemon) = daemon(
        &hub,
        &hub.team.min_token,
        &format!(
            "[calendar]\nics = {:?}\nutc_offset = \"+09:00\"\nworking_hours = \"09:00-17:00\"\n",
            ics_path.display().to_string()
        ),
    );
    // Duan works 09:00-17:00 in India (03:30-11:30 UTC), with no calendar file.
    let (_duan, _duan_daemon) = daemon(
        &hub,
        &hub.team.duan_token,
        "[calendar]\nutc_offset = \"+05:30\"\nworking_hours = \"09:00-17:00\"\n",
    );
    let (aurora, _aurora_daemon) = daemon(&hub, &aurora_token, "");

    let step_id = create_meeting(
        &hub,
        "Discuss the template",
        "min-laptop",
        json!(["min@example.com", "duan@example.com", "aurora@example.com",
               {"name": "Pat Guest", "email": "pat@outside.example"}]),
        60,
        day,
    )
    .await;

    // The two calendars answer on their own, in their own offsets.
    let meeting = wait_meeting(&hub, &step_id, "answered by both calendars", |meeting| {
        meeting["participants"][0]["answered_at"].is_string()
            && meeting["participants"][1]["answered_at"].is_string()
    })
    .await;
    assert_eq!(meeting["status"], "collecting", "{meeting:#}");
    let d = ymd(day);
    assert_eq!(
        meeting["participants"][0]["intervals"],
        json!([{"from": format!("{d}T12:00:00+09:00"), "to": format!("{d}T17:00:00+09:00")}]),
        "{meeting:#}"
    );
    assert_eq!(
        meeting["participants"][1]["intervals"],
        json!([{"from": format!("{d}T09:00:00+05:30"), "to": format!("{d}T17:00:00+05:30")}]),
        "{meeting:#}"
    );
    assert_eq!(meeting["participants"][2]["asked"], "agent");
    assert_eq!(meeting["participants"][2]["agent"], "aurora-desk");
    assert!(meeting["participants"][2]["answered_at"].is_null());
    assert_eq!(meeting["participants"][3]["asked"], "guest");

    // Aurora was asked in her inbox, for herself (through her agent) and for the guest.
    let (_, inbox) = hub
        .rest
        .call(
            Method::GET,
            "/v1/me/notifications?unread=true",
            &hub.team.owner_key,
            None,
        )
        .await;
    let kinds: Vec<&str> = inbox["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"availability.requested"), "{inbox:#}");
    assert!(kinds.contains(&"meeting.availability"), "{inbox:#}");
    let request_of = |kind: &str| {
        inbox["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["kind"] == kind)
            .unwrap()["subject_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (own_request, guest_request) = (
        request_of("availability.requested"),
        request_of("meeting.availability"),
    );

    // She answers from the terminal: a malformed interval is refused and changes nothing.
    let out = agentd_cmd(&aurora, &["answer", &own_request, "--free", "tomorrow"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not FROM/TO"),
        "{}",
        text(&out.stderr)
    );
    let out = agentd_cmd(
        &aurora,
        &[
            "answer",
            &own_request,
            "--free",
            &format!("{d}T09:00:00Z/{d}T08:00:00Z"),
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ends before it starts"),
        "{}",
        text(&out.stderr)
    );
    assert!(meeting_of(&hub, &step_id).await["participants"][2]["answered_at"].is_null());
    // Aurora is in California; the guest answers in UTC.
    let sunday = ymd(sunday);
    let out = agentd_cmd(
        &aurora,
        &[
            "answer",
            &own_request,
            "--free",
            &format!("{sunday}T20:30:00-08:00/{sunday}T23:00:00-08:00"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("answered for aurora@example.com; waiting for the others"),
        "{}",
        text(&out.stdout)
    );
    let out = agentd_cmd(
        &aurora,
        &[
            "answer",
            &guest_request,
            "--free",
            &format!("{d}T03:00:00Z/{d}T04:00:00Z"),
            "--free",
            &format!("{d}T05:00:00Z/{d}T09:00:00Z"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "answered for pat@outside.example; everyone answered: proposed {d}T05:00:00Z"
        )),
        "{}",
        text(&out.stdout)
    );
    let meeting = meeting_of(&hub, &step_id).await;
    assert_eq!(
        meeting["participants"][2]["intervals"],
        json!([{"from": format!("{sunday}T20:30:00-08:00"), "to": format!("{sunday}T23:00:00-08:00")}]),
        "{meeting:#}"
    );

    // Free together: 05:00-07:00 UTC; the earliest hour is proposed.
    let meeting = meeting_of(&hub, &step_id).await;
    assert_eq!(meeting["status"], "proposed", "{meeting:#}");
    assert_eq!(
        meeting["slot"],
        json!({"from": format!("{d}T05:00:00Z"), "to": format!("{d}T06:00:00Z")})
    );

    // Only the assignee's member confirms.
    let (status, body) = hub
        .rest
        .call(
            Method::POST,
            &format!("/v1/steps/{step_id}/meeting/confirm"),
            &hub.team.owner_key,
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = hub
        .rest
        .call(
            Method::POST,
            &format!("/v1/steps/{step_id}/meeting/confirm"),
            &hub.team.min_key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meeting"]["status"], "scheduled");

    let step = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(step["status"], "done", "{step:#}");
    let file_id = step["files"][0].as_str().unwrap();
    assert_eq!(step["meeting"]["file_id"], file_id);
    let expected_start = format!("{}T050000Z", compact(day));
    let expected_end = format!("{}T060000Z", compact(day));

    // The attached invitation, for the people without a daemon of their own.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/files/{file_id}", hub.url))
        .bearer_auth(&hub.team.owner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let ics = response.text().await.unwrap();
    let (start, end, attendees) = parse_invitation(&ics);
    assert_eq!(
        (start.as_str(), end.as_str()),
        (expected_start.as_str(), expected_end.as_str())
    );
    assert_eq!(
        attendees,
        vec![
            "mailto:min@example.com",
            "mailto:duan@example.com",
            "mailto:aurora@example.com",
            "mailto:pat@outside.example",
        ]
    );

    // Every participant's agent got the invitation in `meeting.scheduled`.
    for token in [&hub.team.min_token, &hub.team.duan_token, &aurora_token] {
        let events = hub.rest.events(token).await;
        let scheduled: Vec<&Value> = events
            .iter()
            .filter(|event| event["type"] == "meeting.scheduled")
            .collect();
        assert_eq!(scheduled.len(), 1, "{events:#?}");
        let (start, end, _) = parse_invitation(scheduled[0]["event"]["ics"].as_str().unwrap());
        assert_eq!((start, end), (expected_start.clone(), expected_end.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_not_free_at_all_answers_so_and_no_slot_is_proposed() {
    let hub = Hub::start().await;
    let day = monday();
    let d = ymd(day);
    let aurora_token = register_agent(&hub, "aurora-desk").await;
    // No calendar: aurora answers for herself and for her guest.
    let (aurora, _aurora_daemon) = daemon(&hub, &aurora_token, "");

    let step_id = create_meeting(
        &hub,
        "Plan the offsite",
        "aurora-desk",
        json!(["aurora@example.com", {"name": "Pat Guest", "email": "pat@outside.example"}]),
        30,
        day,
    )
    .await;

    // Both requests reach her inbox.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (own_request, guest_request) = loop {
        let (_, inbox) = hub
            .rest
            .call(
                Method::GET,
                "/v1/me/notifications?priority=action",
                &hub.team.owner_key,
                None,
            )
            .await;
        let request_of = |kind: &str| {
            inbox["notifications"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|item| item["kind"] == kind)
                .and_then(|item| item["subject_id"].as_str())
                .map(str::to_string)
        };
        if let (Some(own), Some(guest)) = (
            request_of("availability.requested"),
            request_of("meeting.availability"),
        ) {
            break (own, guest);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the availability requests did not reach the inbox: {inbox:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // `--not-free` and `--free` together, or neither and no text, are refused by the
    // command line and answer nothing.
    let out = agentd_cmd(
        &aurora,
        &[
            "answer",
            &own_request,
            "--not-free",
            "--free",
            &format!("{d}T09:00:00Z/{d}T10:00:00Z"),
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
    let out = agentd_cmd(&aurora, &["answer", &own_request]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("required"),
        "{}",
        text(&out.stderr)
    );
    assert!(meeting_of(&hub, &step_id).await["participants"][0]["answered_at"].is_null());

    // Not free at all: an answer with no time in it.
    let out = agentd_cmd(&aurora, &["answer", &own_request, "--not-free"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("answered for aurora@example.com; waiting for the others"),
        "{}",
        text(&out.stdout)
    );
    let meeting = meeting_of(&hub, &step_id).await;
    assert!(
        meeting["participants"][0]["answered_at"].is_string(),
        "{meeting:#}"
    );
    assert_eq!(
        meeting["participants"][0]["intervals"],
        json!([]),
        "{meeting:#}"
    );
    assert_eq!(meeting["status"], "collecting", "{meeting:#}");

    // The guest is free all morning, but no time suits both.
    let out = agentd_cmd(
        &aurora,
        &[
            "answer",
            &guest_request,
            "--free",
            &format!("{d}T08:00:00Z/{d}T12:00:00Z"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("answered for pat@outside.example; no time suits everyone in the window"),
        "{}",
        text(&out.stdout)
    );
    let meeting = meeting_of(&hub, &step_id).await;
    assert_eq!(meeting["status"], "no_fit", "{meeting:#}");
    assert!(meeting["slot"].is_null(), "{meeting:#}");
}
