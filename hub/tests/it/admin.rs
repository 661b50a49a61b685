//! The admin CLI as a user runs it: the real binary on a fresh data dir, human and JSON
//! output, secrets shown once, clear errors, and working while a hub serves.

use std::process::{Command, Output};

use serde_json::Value;

fn agenthub(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agenthub"))
        .arg("admin")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("AGENTHUB_LOG")
        .env_remove("AGENTHUB_PUBLIC_URL")
        .env_remove("AGENTHUB_LISTEN")
        .output()
        .expect("run agenthub")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json(output: Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

#[test]
fn admin_sets_up_a_team_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("fresh");
    assert!(
        ok(agenthub(&data_dir, &["workspace", "create", "acme"]))
            .contains("created workspace acme")
    );
    ok(agenthub(
        &data_dir,
        &[
            "member",
            "add",
            "--workspace",
            "acme",
            "--email",
            "aurora@example.com",
            "--role",
            "owner",
        ],
    ));
    ok(agenthub(
        &data_dir,
        &[
            "member",
            "add",
            "--workspace",
            "acme",
            "--email",
            "min@example.com",
        ],
    ));

    let created = ok(agenthub(
        &data_dir,
        &[
            "apikey",
            "create",
            "--workspace",
            "acme",
            "--member",
            "aurora@example.com",
        ],
    ));
    assert!(created.contains("ahk_"), "{created}");
    assert!(created.contains("it will not be shown again"), "{created}");
    let key = json(agenthub(
        &data_dir,
        &[
            "--json",
            "apikey",
            "create",
            "--workspace",
            "acme",
            "--member",
            "aurora@example.com",
            "--name",
            "ci",
        ],
    ));
    let token = key["token"].as_str().unwrap();
    assert!(token.starts_with("ahk_") && token.len() == 68, "{key}");
    // Listings never show secrets.
    let listing = ok(agenthub(
        &data_dir,
        &["apikey", "list", "--workspace", "acme"],
    ));
    assert!(
        !listing.contains(token) && listing.contains(&token[..12]),
        "{listing}"
    );

    let agent = json(agenthub(
        &data_dir,
        &[
            "--json",
            "agent",
            "create",
            "--workspace",
            "acme",
            "--name",
            "min-laptop",
            "--owner",
            "min@example.com",
            "--capability",
            "docs",
            "--max-concurrency",
            "2",
        ],
    ));
    assert!(agent["token"].as_str().unwrap().starts_with("aha_"));
    assert_eq!(agent["capabilities"], serde_json::json!(["docs"]));
    assert_eq!(agent["status"], "offline");
    let listing = json(agenthub(
        &data_dir,
        &["--json", "agent", "list", "--workspace", "acme"],
    ));
    assert_eq!(listing[0]["name"], "min-laptop");
    let shown = ok(agenthub(
        &data_dir,
        &["agent", "show", "--workspace", "acme", "min-laptop"],
    ));
    assert!(
        shown.contains("min-laptop") && shown.contains("offline"),
        "{shown}"
    );
    let revoked = json(agenthub(
        &data_dir,
        &[
            "--json",
            "agent",
            "revoke-token",
            "--workspace",
            "acme",
            "min-laptop",
            "--reissue",
        ],
    ));
    assert_eq!(revoked["revoked"], 1);
    assert!(revoked["token"].as_str().unwrap().starts_with("aha_"));

    let members = json(agenthub(
        &data_dir,
        &["--json", "member", "list", "--workspace", "acme"],
    ));
    assert_eq!(members.as_array().unwrap().len(), 2);
    let tasks = json(agenthub(
        &data_dir,
        &["--json", "task", "list", "--workspace", "acme"],
    ));
    assert_eq!(tasks, serde_json::json!([]));
    let workspaces = ok(agenthub(&data_dir, &["workspace", "list"]));
    assert!(workspaces.contains("acme"));
}

#[test]
fn admin_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "member",
                "add",
                "--workspace",
                "nope",
                "--email",
                "a@example.com",
            ],
            "workspace `nope` not found",
        ),
        (
            vec!["workspace", "create", " "],
            "workspace name must not be empty",
        ),
    ];
    for (args, needle) in cases {
        let output = agenthub(dir.path(), &args);
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    ok(agenthub(dir.path(), &["workspace", "create", "acme"]));
    let output = agenthub(
        dir.path(),
        &[
            "member",
            "add",
            "--workspace",
            "acme",
            "--email",
            "not-an-email",
        ],
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not an email address"));
    let output = agenthub(
        dir.path(),
        &[
            "member",
            "add",
            "--workspace",
            "acme",
            "--email",
            "a@example.com",
            "--role",
            "king",
        ],
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown role `king`"));
    let output = agenthub(dir.path(), &["workspace", "create", "acme"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
}

#[test]
fn admin_works_while_a_hub_serves_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut hub = Command::new(env!("CARGO_BIN_EXE_agenthub"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("AGENTHUB_LOG", "warn")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the hub did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ok(agenthub(dir.path(), &["workspace", "create", "acme"]));
    ok(agenthub(
        dir.path(),
        &[
            "member",
            "add",
            "--workspace",
            "acme",
            "--email",
            "aurora@example.com",
            "--role",
            "owner",
        ],
    ));
    let key = json(agenthub(
        dir.path(),
        &[
            "--json",
            "apikey",
            "create",
            "--workspace",
            "acme",
            "--member",
            "aurora@example.com",
        ],
    ));
    // The serving hub sees what the CLI wrote.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    write!(stream, "GET /v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", key["token"].as_str().unwrap()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    hub.kill().unwrap();
    hub.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shows_a_failed_task_with_its_timeline_and_retries_its_step() {
    use agenthub::accounts::{self, Actor, MemberActor, Role};
    use agenthub::agents::{self, NewAgent};
    use agenthub::ctx::{Ctx, Settings};
    use agenthub::store::Store;
    use agenthub::tasks;

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let store = Store::open_data_dir(&data_dir).unwrap();
    store.migrate().await.unwrap();
    let ctx = Ctx::new(store.clone(), Settings::default());
    let ws = accounts::create_workspace(&store, "acme").await.unwrap();
    let aurora = accounts::add_member(&store, &ws.id, "aurora@example.com", None, Role::Owner)
        .await
        .unwrap();
    let created = agents::create_agent(
        &store,
        NewAgent {
            workspace_id: &ws.id,
            name: "min-laptop",
            owner: "aurora@example.com",
            capabilities: &[],
            max_concurrency: 2,
        },
    )
    .await
    .unwrap();
    let agent = agents::authenticate_token(&store, &created.token)
        .await
        .unwrap();
    let actor = Actor::Member(MemberActor {
        workspace_id: ws.id.clone(),
        member_id: aurora.id.clone(),
        email: aurora.email.clone(),
        role: Role::Owner,
        scopes: agenthub::accounts::authority::Scopes::ALL,
    });
    let view = tasks::create_task(&ctx, &actor, crate::support::report_task_for("min-laptop"))
        .await
        .unwrap();
    let draft = crate::support::step_id(&view, "draft");
    tasks::claim_step(&ctx, &agent, &draft).await.unwrap();
    tasks::fail_step(
        &ctx,
        &agent,
        &draft,
        1,
        "a shell step needs `input.command`",
        false,
    )
    .await
    .unwrap();

    let task_id = view.task.id.clone();
    let shown = ok(agenthub(
        &data_dir,
        &["task", "show", "--workspace", "acme", &task_id],
    ));
    for needle in [
        "[failed] Quarterly report",
        "progress: 2/2 steps finished",
        "outcome: failed, step draft: a shell step needs `input.command` (by agent min-laptop)",
        "step `draft` failed",
        "claimed -> failed",
        "pending -> skipped",
        "active -> failed",
    ] {
        assert!(shown.contains(needle), "`{needle}` missing from:\n{shown}");
    }
    let listed = ok(agenthub(
        &data_dir,
        &["task", "list", "--workspace", "acme"],
    ));
    assert!(listed.contains("2/2"), "{listed}");

    let retried = ok(agenthub(
        &data_dir,
        &[
            "task",
            "retry",
            "--workspace",
            "acme",
            &draft,
            "--reason",
            "command set",
        ],
    ));
    assert!(
        retried.contains("step draft is ready (attempt 2)"),
        "{retried}"
    );
    assert!(retried.contains("is active"), "{retried}");
    let again = agenthub(&data_dir, &["task", "retry", "--workspace", "acme", &draft]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("only a failed or skipped step can be retried"),
        "{stderr}"
    );
    let shown = json(agenthub(
        &data_dir,
        &["--json", "task", "show", "--workspace", "acme", &task_id],
    ));
    let last = shown["timeline"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["step_key"].as_str(), last["to"].as_str()),
        (Some("draft"), Some("ready"))
    );
    assert_eq!(shown["steps"][1]["status"], "pending");
}

/// What `agenthub serve` writes to stderr from its start until a SIGTERM, with `args` before
/// `serve` and `AGENTHUB_LOG=info`; stderr is a pipe, as under a service manager.
fn serve_logs(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hub = Command::new(env!("CARGO_BIN_EXE_agenthub"))
        .args(args)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("AGENTHUB_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the hub did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = hub.wait_with_output().unwrap();
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn hub_logs_carry_no_colour_codes_into_a_pipe_and_are_json_on_request() {
    let text = serve_logs(&[]);
    assert!(text.contains("agenthub serving"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in piped logs: {text:?}"
    );

    let json = serve_logs(&["--log-format", "json"]);
    let lines: Vec<Value> = json
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    assert!(
        lines.iter().any(|line| line["level"] == "INFO"
            && line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message == "agenthub serving")),
        "{json}"
    );
}

#[test]
fn admin_prints_a_sign_in_link_for_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    ok(agenthub(data_dir, &["workspace", "create", "acme"]));
    ok(agenthub(
        data_dir,
        &[
            "member",
            "add",
            "--workspace",
            "acme",
            "--email",
            "min@example.com",
        ],
    ));
    let human = ok(agenthub(
        data_dir,
        &[
            "member",
            "login-link",
            "--workspace",
            "acme",
            "--email",
            "min@example.com",
            "--public-url",
            "https://hub.example.com/",
        ],
    ));
    let first_line = human.lines().next().unwrap();
    assert!(
        first_line.starts_with("https://hub.example.com/login/ahl_"),
        "{human}"
    );
    assert!(human.contains("usable once"), "{human}");
    let link = json(agenthub(
        data_dir,
        &[
            "--json",
            "member",
            "login-link",
            "--workspace",
            "acme",
            "--email",
            "min@example.com",
        ],
    ));
    assert_eq!(link["email"], "min@example.com");
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:7700/login/ahl_"),
        "{link}"
    );
    let unknown = agenthub(
        data_dir,
        &[
            "member",
            "login-link",
            "--workspace",
            "acme",
            "--email",
            "nobody@example.com",
        ],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody@example.com"));
}
