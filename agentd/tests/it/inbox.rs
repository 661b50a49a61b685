//! `agentd inbox` against the real hub: what waits comes first with the unread counts,
//! `--all` shows read ones too, `agentd inbox read ID|--all` marks them read, and an
//! unknown id is refused.

use reqwest::Method;
use serde_json::{Value, json};

use crate::ends::agentd_cmd;
use crate::hub::Hub;
use crate::support::{Agentd, text};

async fn shown(agentd: &Agentd, args: &[&str]) -> String {
    let out = agentd_cmd(agentd, args).await;
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_shows_what_waits_first_and_marks_notifications_read() {
    let hub = Hub::start().await;
    let min = Agentd::new();
    min.login_with(&hub.url, &hub.team.min_token);
    assert!(
        shown(&min, &["inbox"])
            .await
            .contains("nothing is waiting for you")
    );

    // While min is away: the owner asks whether min's agent is free, and cancels a task
    // min created.
    let (status, asked) = hub
        .rest
        .call(
            Method::POST,
            "/v1/agents/min-laptop/availability",
            &hub.team.owner_key,
            Some(json!({"question": "Free this afternoon?"})),
        )
        .await;
    assert_eq!(status, 201, "{asked}");
    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.min_key,
            Some(json!({"title": "Slides", "steps": [
                {"key": "only", "title": "Make the slides", "assignees": ["duan-desktop"]}]})),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    let task_id = task["id"].as_str().unwrap();
    let (status, cancelled) = hub
        .rest
        .call(
            Method::PATCH,
            &format!("/v1/tasks/{task_id}"),
            &hub.team.owner_key,
            Some(json!({"action": "cancel"})),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");

    let text = shown(&min, &["inbox"]).await;
    assert!(
        text.contains("unread: 1 waiting on you, 1 to know"),
        "{text}"
    );
    let waiting = text
        .find("Waiting on you:")
        .expect("action items are listed");
    let info = text
        .find("For your information:")
        .expect("info items are listed");
    assert!(waiting < info, "what waits comes first: {text}");
    assert!(text.contains("Can min-laptop take on work?"), "{text}");
    assert!(text.contains("Free this afternoon?"), "{text}");
    assert!(text.contains("Task cancelled: Slides"), "{text}");

    let json = agentd_cmd(&min, &["--json", "inbox"]).await;
    let page: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(page["meta"]["unread"], json!({"action": 1, "info": 1}));
    let cancelled_id = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["kind"] == "task.cancelled")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Read one: it leaves the unread view and stays under --all.
    let text = shown(&min, &["inbox", "read", &cancelled_id]).await;
    assert!(
        text.contains("marked read: Task cancelled: Slides"),
        "{text}"
    );
    assert!(
        text.contains("unread: 1 waiting on you, 0 to know"),
        "{text}"
    );
    let text = shown(&min, &["inbox"]).await;
    assert!(!text.contains("Task cancelled"), "{text}");
    let text = shown(&min, &["inbox", "--all"]).await;
    assert!(text.contains("Task cancelled: Slides (read)"), "{text}");
    assert!(
        text.contains("Can min-laptop take on work? (unread)"),
        "{text}"
    );

    // Read all.
    let text = shown(&min, &["inbox", "read", "--all"]).await;
    assert!(text.contains("marked 1 notification(s) read"), "{text}");
    assert!(
        shown(&min, &["inbox"])
            .await
            .contains("nothing is waiting for you")
    );
    // The hub agrees.
    let (_, page) = hub
        .rest
        .call(
            Method::GET,
            "/v1/me/notifications?unread=true",
            &hub.team.min_key,
            None,
        )
        .await;
    assert_eq!(page["meta"]["count"], 0, "{page}");

    // An id that is not one of min's notifications is refused, and so is no id at all.
    let out = agentd_cmd(
        &min,
        &["inbox", "read", "01935a7e-0000-7000-8000-00000000ffff"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        crate::support::text(&out.stderr)
    );
    assert!(crate::support::text(&out.stderr).contains("not found"));
    let out = agentd_cmd(&min, &["inbox", "read"]).await;
    assert_eq!(out.status.code(), Some(2));
}
