//! Desktop notifications on a private session bus (`dbus-daemon --session`) with a fake
//! `org.freedesktop.Notifications` server: what agentd shows, and that clicking Approve
//! decides at the real hub. Skipped, by name, where dbus-daemon is not installed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;
use zbus::object_server::SignalEmitter;

use crate::claude::{agentd_with_claude, fake_claude, message};
use crate::hub::Hub;
use crate::support::{Agentd, spawn, text, wait_exit};

const WAIT: Duration = Duration::from_secs(20);
const PATH: &str = "/org/freedesktop/Notifications";

/// A private session bus, killed on drop.
struct SessionBus {
    address: String,
    child: Child,
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SessionBus {
    /// Starts `dbus-daemon`; `None` (and the skip printed) when it is not installed.
    fn start(test_name: &str) -> Option<SessionBus> {
        let spawned = Command::new("dbus-daemon")
            .args(["--session", "--print-address", "--nofork"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                // Straight to stderr so libtest's capture does not hide it.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: dbus-daemon is not available ({err}) ({test_name})"
                );
                return None;
            }
        };
        let mut address = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        assert!(!address.is_empty(), "dbus-daemon printed its address");
        Some(SessionBus { address, child })
    }
}

/// A notification the fake server was asked to show.
#[derive(Debug, Clone)]
struct Shown {
    id: u32,
    app_name: String,
    summary: String,
    body: String,
    actions: Vec<String>,
}

struct FakeNotifications {
    shown: Arc<Mutex<Vec<Shown>>>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl FakeNotifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, zbus::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut shown = self.shown.lock().unwrap();
        let id = shown.len() as u32 + 1;
        shown.push(Shown {
            id,
            app_name,
            summary,
            body,
            actions,
        });
        id
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["actions".into(), "body".into()]
    }

    #[zbus(out_args("name", "vendor", "version", "spec_version"))]
    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "fake".into(),
            "agentd tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}

    #[zbus(signal)]
    async fn action_invoked(
        emitter: &SignalEmitter<'_>,
        id: u32,
        action_key: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn notification_closed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        reason: u32,
    ) -> zbus::Result<()>;
}

/// The fake notification server on `bus`.
struct Desktop {
    connection: zbus::Connection,
    shown: Arc<Mutex<Vec<Shown>>>,
}

impl Desktop {
    async fn serve(bus: &SessionBus) -> Desktop {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let connection = zbus::connection::Builder::address(bus.address.as_str())
            .name("org.freedesktop.Notifications")
            .serve_at(
                PATH,
                FakeNotifications {
                    shown: shown.clone(),
                },
            )
            .build()
            .await
            .expect("serve org.freedesktop.Notifications");
        Desktop { connection, shown }
    }

    fn shown(&self) -> Vec<Shown> {
        self.shown.lock().unwrap().clone()
    }

    /// Waits for a notification whose title starts with `title`.
    async fn wait_for(&self, title: &str) -> Shown {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(shown) = self
                .shown()
                .into_iter()
                .find(|shown| shown.summary.starts_with(title))
            {
                return shown;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no notification \"{title}…\" within 20 s; shown: {:#?}",
                self.shown()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks `action` on notification `id`.
    async fn click(&self, id: u32, action: &str) {
        // agentd subscribes to the signal right after the notification is shown.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let emitter = SignalEmitter::new(&self.connection, PATH).unwrap();
        FakeNotifications::action_invoked(&emitter, id, action)
            .await
            .expect("emit ActionInvoked");
    }
}

const ACTIONS: [&str; 4] = ["approve", "Approve", "reject", "Reject"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_shown_on_the_desktop_and_approve_decides_it_at_the_hub() {
    let Some(bus) = SessionBus::start(
        "notify::an_approval_is_shown_on_the_desktop_and_approve_decides_it_at_the_hub",
    ) else {
        return;
    };
    let desktop = Desktop::serve(&bus).await;
    let hub = Hub::start().await;
    let agentd = Agentd::new().with_env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _daemon = spawn(&agentd, &["run"]);
    let step_id = hub
        .rest
        .create_step(
            &hub.team.min_key,
            json!({"title": "Write the outline", "assignees": ["min-laptop"],
                   "executor": "shell", "input": {"command": "echo outline > outline.md"},
                   "approval_level": 1, "approvers": ["min@example.com"]}),
        )
        .await;

    let taken = desktop.wait_for("Step for you: Write the outline").await;
    assert_eq!(taken.app_name, "agentd");
    assert!(taken.actions.is_empty(), "{taken:?}");
    let approval = desktop.wait_for("Approve \"Write the outline\"?").await;
    assert_eq!(approval.actions, ACTIONS);
    assert!(
        approval.body.starts_with("Task: Write the outline"),
        "{}",
        approval.body
    );
    assert!(
        approval.body.contains("Result: ") && approval.body.contains("\"exit_code\":0"),
        "{}",
        approval.body
    );
    let step = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(step["status"], "awaiting_approval", "{step:#}");

    desktop.click(approval.id, "approve").await;
    hub.rest
        .wait_step(&hub.team.owner_key, &step_id, WAIT, "done", |step| {
            step["status"] == "done"
        })
        .await;
    let (_, inbox) = hub
        .rest
        .call(Method::GET, "/v1/me/inbox", &hub.team.min_key, None)
        .await;
    assert_eq!(inbox["approvals"], json!([]), "{inbox:#}");
    let finished = desktop.wait_for("Task finished: Write the outline").await;
    assert!(finished.actions.is_empty(), "{finished:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_end_of_a_task_its_human_created_is_shown() {
    let Some(bus) = SessionBus::start("notify::only_the_end_of_a_task_its_human_created_is_shown")
    else {
        return;
    };
    let desktop = Desktop::serve(&bus).await;
    let hub = Hub::start().await;
    let agentd = Agentd::new().with_env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _daemon = spawn(&agentd, &["run"]);
    let quick = |title: &str| {
        json!({"title": title, "assignees": ["min-laptop"], "executor": "shell",
               "input": {"command": "true"}})
    };

    // aurora's task ends first; min-laptop took part in it, but min did not create it.
    let auroras = hub
        .rest
        .create_step(&hub.team.owner_key, quick("Tidy the wiki"))
        .await;
    hub.rest
        .wait_step(&hub.team.owner_key, &auroras, WAIT, "done", |step| {
            step["status"] == "done"
        })
        .await;
    hub.rest
        .create_step(&hub.team.min_key, quick("Run the checks"))
        .await;

    let finished = desktop.wait_for("Task finished: Run the checks").await;
    assert_eq!(finished.app_name, "agentd");
    let ends: Vec<String> = desktop
        .shown()
        .into_iter()
        .map(|shown| shown.summary)
        .filter(|summary| summary.starts_with("Task "))
        .collect();
    assert_eq!(ends, ["Task finished: Run the checks"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_is_shown_with_its_exact_command_and_approve_lets_it_run() {
    let Some(bus) = SessionBus::start(
        "notify::a_tool_call_is_shown_with_its_exact_command_and_approve_lets_it_run",
    ) else {
        return;
    };
    let desktop = Desktop::serve(&bus).await;
    let (claude_url, script) = fake_claude(vec![
        (
            200,
            None,
            message(
                json!([{"type": "tool_use", "id": "toolu_1", "name": "run_shell",
                        "input": {"command": "echo from-the-desktop > proof.txt"}}]),
                "tool_use",
                10,
                5,
            ),
        ),
        (
            200,
            None,
            message(
                json!([{"type": "text", "text": "Done."}]),
                "end_turn",
                10,
                5,
            ),
        ),
    ])
    .await;
    let hub = Hub::start().await;
    let agentd = agentd_with_claude(&claude_url).with_env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let child = spawn(&agentd, &["run", "--once"]);
    let step_id = hub
        .rest
        .create_step(
            &hub.team.owner_key,
            json!({"title": "Leave proof", "assignees": ["min-laptop"], "executor": "claude"}),
        )
        .await;

    let ask = desktop.wait_for("Tool call wants approval").await;
    assert_eq!(ask.actions, ACTIONS);
    assert_eq!(
        ask.body,
        "Allow run_shell `echo from-the-desktop > proof.txt`?"
    );
    desktop.click(ask.id, "approve").await;

    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let step = hub.rest.step(&hub.team.owner_key, &step_id).await;
    assert_eq!(step["status"], "done", "{step:#}");
    let work_dir = agentd.work_dir(Uuid::parse_str(&step_id).unwrap());
    assert_eq!(
        std::fs::read_to_string(work_dir.join("proof.txt")).unwrap(),
        "from-the-desktop\n"
    );
    let calls = script.calls.lock().unwrap().clone();
    let tool_result = &calls[1].body["messages"][2]["content"][0];
    assert!(tool_result.get("is_error").is_none(), "{tool_result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_notify_shows_nothing_and_a_missing_bus_is_reported_once() {
    let Some(bus) =
        SessionBus::start("notify::no_notify_shows_nothing_and_a_missing_bus_is_reported_once")
    else {
        return;
    };
    let desktop = Desktop::serve(&bus).await;
    let hub = Hub::start().await;
    let step = json!({"title": "Quick", "assignees": ["min-laptop"], "executor": "shell",
                      "input": {"command": "sleep 1"}});

    let quiet = Agentd::new().with_env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    quiet.login_with(&hub.url, &hub.team.min_token);
    let child = spawn(&quiet, &["run", "--once", "--no-notify"]);
    hub.rest
        .create_step(&hub.team.owner_key, step.clone())
        .await;
    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(desktop.shown().len(), 0, "{:#?}", desktop.shown());

    let busless = Agentd::new().with_env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    busless.login_with(&hub.url, &hub.team.min_token);
    let child = spawn(&busless, &["run", "--once"]);
    hub.rest.create_step(&hub.team.owner_key, step).await;
    let out = wait_exit(child).await;
    let logs = text(&out.stderr);
    assert!(out.status.success(), "{logs}");
    assert_eq!(
        logs.matches("desktop notifications are unavailable")
            .count(),
        1,
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_shown_to_its_creator_with_the_step_the_reason_and_who() {
    let Some(bus) = SessionBus::start(
        "notify::a_failed_task_is_shown_to_its_creator_with_the_step_the_reason_and_who",
    ) else {
        return;
    };
    let desktop = Desktop::serve(&bus).await;
    let hub = Hub::start().await;
    let min = Agentd::new().with_env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    min.login_with(&hub.url, &hub.team.min_token);
    let _min_daemon = spawn(&min, &["run"]);
    // duan's agentd has no Claude key and the default configuration.
    let duan = Agentd::new();
    duan.login_with(&hub.url, &hub.team.duan_token);
    let _duan_daemon = spawn(&duan, &["run", "--no-notify"]);

    let (status, task) = hub
        .rest
        .call(
            Method::POST,
            "/v1/tasks",
            &hub.team.min_key,
            Some(json!({"title": "Weekly numbers", "steps": [
                {"key": "numbers", "title": "Collect the numbers", "assignees": ["duan-desktop"]}]})),
        )
        .await;
    assert_eq!(status, 201, "{task}");

    let failed = desktop.wait_for("Task failed: Weekly numbers").await;
    assert!(failed.actions.is_empty(), "{failed:?}");
    assert_eq!(
        failed.body,
        format!(
            "step `numbers` failed: {} (by duan-desktop)",
            crate::ends::no_key_reason(&duan)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_arrived_while_agentd_was_offline_is_shown_when_it_connects() {
    let Some(bus) = SessionBus::start(
        "notify::what_arrived_while_agentd_was_offline_is_shown_when_it_connects",
    ) else {
        return;
    };
    let desktop = Desktop::serve(&bus).await;
    let hub = Hub::start().await;
    // Before agentd runs: the owner asks whether min's agent is free. The agent's own
    // event has no desktop notification; min's notification inbox holds it.
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
    let agentd = Agentd::new().with_env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    agentd.login_with(&hub.url, &hub.team.min_token);
    let _daemon = spawn(&agentd, &["run"]);

    let shown = desktop.wait_for("Can min-laptop take on work?").await;
    assert_eq!(shown.body, "Free this afternoon?");
    assert!(shown.actions.is_empty(), "{shown:?}");
    // Once, not again for the same notification.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n_shown = desktop
        .shown()
        .iter()
        .filter(|shown| shown.summary.starts_with("Can min-laptop"))
        .count();
    assert_eq!(n_shown, 1, "{:#?}", desktop.shown());
}
