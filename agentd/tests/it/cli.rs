//! The teammate commands: login, keys, approvals, tasks, service files, errors (the
//! inbox against the real hub: `inbox.rs`).

use crate::support::{Agentd, FakeHub, TOKEN, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_verifies_the_token_and_stores_it_in_a_private_file() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    let out = agentd.run(&["login", "--hub", &hub.url, "--token", TOKEN]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("logged in to"), "{stdout}");
    assert!(stdout.contains("min-laptop"), "{stdout}");
    assert!(!stdout.contains(TOKEN), "the token is never printed");
    let credentials = agentd.config_dir().join("credentials.toml");
    assert!(
        std::fs::read_to_string(&credentials)
            .unwrap()
            .contains(TOKEN)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&credentials)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let config = std::fs::read_to_string(agentd.config_dir().join("config.toml")).unwrap();
    assert!(config.contains(&hub.url), "{config}");
    assert!(!config.contains(TOKEN), "the token is not in config.toml");

    let status = agentd.run(&["--json", "status"]);
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(value["running"], false);
    assert_eq!(value["logged_in"], true);
    assert_eq!(value["hub"], hub.url.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_one_line_and_exit_code_4() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    let out = agentd.run(&["login", "--hub", &hub.url, "--token", "aha_wrong"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("rejected the agent token"), "{stderr}");
    assert!(!agentd.config_dir().join("credentials.toml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hub_is_one_line_and_exit_code_5() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let agentd = Agentd::new();
    let out = agentd.run(&["login", "--hub", &url, "--token", TOKEN]);
    assert_eq!(out.status.code(), Some(5));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach the hub"), "{stderr}");
}

#[test]
fn bad_configuration_is_one_line_and_exit_code_3() {
    let agentd = Agentd::new();
    agentd.write_config("max_concurrency = \"lots\"\n");
    let out = agentd.run(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("invalid configuration"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let fresh = Agentd::new();
    let out = fresh.run(&["inbox"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("agentd login --hub URL"));
}

#[test]
fn plain_http_to_a_remote_hub_needs_insecure() {
    let agentd = Agentd::new();
    let out = agentd.run(&["login", "--hub", "http://hub.example.com", "--token", TOKEN]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("--insecure"));
}

#[test]
fn the_claude_key_is_stored_and_never_shown() {
    let agentd = Agentd::new();
    let out = agentd.run_with_stdin(&["key", "set"], "sk-ant-secret-123\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("sk-ant-secret-123"));
    let status = agentd.run(&["key", "status"]);
    let shown = text(&status.stdout);
    assert!(shown.contains("a Claude API key is set"), "{shown}");
    assert!(!shown.contains("sk-ant-secret-123"), "{shown}");
    let cleared = agentd.run(&["key", "clear"]);
    assert!(cleared.status.success());
    let status = agentd.run(&["--json", "key", "status"]);
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(value["present"], false);
}

#[test]
fn without_a_keyring_the_file_fallback_is_announced_once() {
    let agentd = Agentd::new()
        .with_env("AGENTD_CREDENTIAL_STORE", "auto")
        .with_env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/agentd-test-bus",
        );
    let out = agentd.run_with_stdin(&["key", "set"], "sk-ant-secret-456\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("no OS keyring is reachable").count(),
        1,
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("credentials.toml"));
    let status = agentd.run(&["key", "status"]);
    assert!(text(&status.stdout).contains("credentials.toml"));
    assert!(
        !text(&status.stderr).contains("keyring"),
        "reading says nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_uses_the_hub_with_the_agent_token() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);

    // By approval id: resolved to its step through the inbox.
    let out = agentd.run(&[
        "approve",
        "01935a7e-0000-7000-8000-0000000000a1",
        "--comment",
        "fine",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("the step is now done"));
    let seen = hub.requests();
    let approve = seen
        .iter()
        .find(|request| request.path == "/v1/steps/01935a7e-0000-7000-8000-000000000051/approve")
        .expect("the approve route was called");
    assert_eq!(approve.method, "POST");
    assert!(approve.body.contains("fine"));
    // The decision names the attempt and the digest of the result the inbox showed.
    let body: serde_json::Value = serde_json::from_str(&approve.body).unwrap();
    assert_eq!(body["attempt"], 1, "{body}");
    assert_eq!(
        body["digest"],
        "sha256:f2bd137e23792605caf1efa20e28961330c677e5879e4e128d07a1e9c0cb0551"
    );

    let out = agentd.run(&["approve", "01935a7e-0000-7000-8000-00000000ffff"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(text(&out.stderr).contains("step not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_create_from_yaml_and_from_flags() {
    let hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.login(&hub.url);
    let file = agentd.home.path().join("task.yaml");
    std::fs::write(
        &file,
        "title: Quarterly report\nsteps:\n  - key: draft\n    title: Draft the outline\n    assignees: [min-laptop]\n    executor: shell\n    input:\n      command: make outline\n",
    )
    .unwrap();
    let out = agentd.run(&["task", "create", "--file", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created task"));
    let posted = hub
        .requests()
        .into_iter()
        .rfind(|request| request.path == "/v1/tasks")
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&posted.body).unwrap();
    assert_eq!(body["steps"][0]["input"]["command"], "make outline");
    assert_eq!(body["steps"][0]["assignees"][0], "min-laptop");

    let out = agentd.run(&[
        "task",
        "create",
        "--title",
        "Run tests",
        "--assignee",
        "min-laptop",
        "--executor",
        "shell",
        "--command",
        "cargo test",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let posted = hub
        .requests()
        .into_iter()
        .rfind(|request| request.path == "/v1/tasks")
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&posted.body).unwrap();
    assert_eq!(body["steps"][0]["key"], "main");
    assert_eq!(body["steps"][0]["input"]["command"], "cargo test");
}

#[test]
fn completions_are_printed_for_bash() {
    let out = Agentd::new().run(&["completions", "bash"]);
    assert!(out.status.success());
    let script = text(&out.stdout);
    assert!(script.contains("agentd"), "{script}");
    assert!(script.contains("inbox"), "{script}");
}

#[cfg(target_os = "linux")]
#[test]
fn service_install_writes_a_valid_unit_pointing_at_the_binary() {
    let agentd = Agentd::new();
    let out = agentd.run(&["service", "install", "--no-start"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let unit_path = agentd
        .home
        .path()
        .join("config")
        .join("systemd/user/agentd.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let exe = env!("CARGO_BIN_EXE_agentd");
    assert!(unit.contains(&format!("ExecStart={exe} run")), "{unit}");
    assert!(unit.contains("WantedBy=default.target"));
    if let Ok(output) = std::process::Command::new("systemd-analyze")
        .args(["verify", "--user", unit_path.to_str().unwrap()])
        .output()
    {
        let stderr = text(&output.stderr);
        assert!(
            !stderr.contains("agentd.service:"),
            "systemd-analyze found problems in the unit: {stderr}"
        );
    }
    let out = agentd.run(&["--json", "service", "status"]);
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["installed"], true);
    let out = agentd.run(&["service", "uninstall"]);
    assert!(out.status.success());
    assert!(!unit_path.exists());
}
