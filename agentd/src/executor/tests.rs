//! Unit tests of `executor`: which executor a step runs with, and what a step that
//! cannot run on this machine is told.

use serde_json::json;

use super::*;

fn step(executor: Option<&str>, input: Value) -> StepInfo {
    StepInfo {
        step_id: Uuid::now_v7(),
        task_id: Uuid::now_v7(),
        task_title: "Quarterly report".into(),
        task_description: String::new(),
        task_description_truncated: false,
        key: "draft".into(),
        title: "Draft the outline".into(),
        description: String::new(),
        attempt: 1,
        executor: executor.map(str::to_string),
        input,
        approval_level: 0,
        required_capabilities: vec![],
        expected_outputs: None,
        inputs: vec![],
        rework_comment: None,
    }
}

fn executors(key: bool, default_executor: Option<&str>) -> Executors {
    let config = Config {
        default_executor: default_executor.map(str::to_string),
        ..Config::default()
    };
    Executors {
        config: Arc::new(config),
        config_file: PathBuf::from("/home/min/.config/agentd/config.toml"),
        claude_key: ClaudeKey::new(key.then(|| Secret::new("sk-ant-test")), None),
        manual: manual::Waiters::default(),
        hub: None,
    }
}

fn failure(executors: &Executors, step: &StepInfo) -> Failure {
    executors.check(step).expect_err("the step cannot run here")
}

#[test]
fn a_step_naming_no_executor_runs_with_claude_when_a_key_is_available() {
    let unnamed = step(None, Value::Null);
    for default_executor in [None, Some("shell")] {
        let executors = executors(true, default_executor);
        let choice = executors.choose(&unnamed);
        assert_eq!((choice.name, choice.source), ("claude", Source::ClaudeKey));
        assert_eq!(executors.check(&unnamed), Ok(Kind::Claude));
    }
}

#[test]
fn without_a_key_the_configured_default_runs_a_step_naming_no_executor() {
    let executors = executors(false, Some("shell"));
    let unnamed = step(None, json!({"command": "make test"}));
    let choice = executors.choose(&unnamed);
    assert_eq!((choice.name, choice.source), ("shell", Source::Config));
    assert_eq!(executors.check(&unnamed), Ok(Kind::Shell));
}

#[test]
fn a_named_executor_wins_over_key_and_configuration() {
    let executors = executors(true, Some("manual"));
    let named = step(Some("shell"), json!({"command": "make test"}));
    let choice = executors.choose(&named);
    assert_eq!((choice.name, choice.source), ("shell", Source::Step));
}

#[test]
fn without_key_or_default_a_step_fails_saying_how_to_set_a_key() {
    let executors = executors(false, None);
    let failure = failure(&executors, &step(None, Value::Null));
    assert!(!failure.retryable);
    assert_eq!(
        failure.reason,
        "this step names no executor, so it runs with the `claude` executor, which needs a \
         Claude API key: run `agentd key set` or set ANTHROPIC_API_KEY (or set \
         default_executor in /home/min/.config/agentd/config.toml)"
    );
}

#[test]
fn a_claude_step_without_a_key_fails_saying_how_to_set_one() {
    let executors = executors(false, Some("shell"));
    let failure = failure(&executors, &step(Some("claude"), Value::Null));
    assert!(!failure.retryable);
    assert_eq!(
        failure.reason,
        "this step runs with the `claude` executor, which needs a Claude API key: run \
         `agentd key set` or set ANTHROPIC_API_KEY"
    );
}

#[test]
fn a_shell_step_without_a_command_says_what_to_give_it() {
    let executors = executors(false, Some("shell"));
    let named = failure(&executors, &step(Some("shell"), json!({"cmd": "make"})));
    assert!(!named.retryable);
    assert_eq!(
        named.reason,
        "this step runs with the `shell` executor, which needs `input.command` (a string, \
         e.g. {\"command\": \"make test\"})"
    );
    let by_default = failure(&executors, &step(None, Value::Null));
    assert!(!by_default.retryable);
    assert!(
        by_default.reason.starts_with(
            "this step names no executor, so it runs with the `shell` executor \
             (default_executor in /home/min/.config/agentd/config.toml), which needs \
             `input.command`"
        ),
        "{}",
        by_default.reason
    );
    assert!(
        by_default.reason.contains("run `agentd key set`"),
        "{}",
        by_default.reason
    );
}

#[test]
fn an_external_step_without_a_program_names_the_setting() {
    let executors = executors(true, None);
    let failure = failure(&executors, &step(Some("external"), Value::Null));
    assert!(!failure.retryable);
    assert_eq!(
        failure.reason,
        "this step runs with the `external` executor, which needs a program: set `program` \
         under [external] in /home/min/.config/agentd/config.toml"
    );
}

#[test]
fn an_unknown_executor_is_named_with_the_known_ones() {
    let executors = executors(true, None);
    let failure = failure(&executors, &step(Some("gpt"), Value::Null));
    assert!(!failure.retryable);
    assert_eq!(
        failure.reason,
        "this step names the executor `gpt`, which agentd does not have; name one of claude, \
         claude-code, shell, manual or external"
    );
}

#[test]
fn a_manual_step_runs_anywhere() {
    let executors = executors(false, None);
    assert_eq!(
        executors.check(&step(Some("manual"), Value::Null)),
        Ok(Kind::Manual)
    );
}

#[tokio::test]
async fn a_key_stored_while_running_is_found_before_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let stores = Credentials::new(
        crate::config::CredentialStoreKind::File,
        &dir.path().join("credentials.toml"),
    );
    let key = ClaudeKey::new(None, Some(stores.clone()));
    key.refresh().await;
    assert_eq!(key.get(), None);
    stores
        .set(SecretName::ClaudeKey, &Secret::new("sk-ant-later"))
        .unwrap();
    key.refresh().await;
    assert_eq!(key.get(), Some(Secret::new("sk-ant-later")));
}
