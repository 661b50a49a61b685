//! Unit tests of `config`.

use super::*;

#[test]
fn defaults_round_trip_through_toml() {
    let text = toml::to_string_pretty(&Config::default()).unwrap();
    let config: Config = toml::from_str(&text).unwrap();
    assert_eq!(config.max_concurrency, 1);
    assert_eq!(config.claude.policy("run_shell"), ToolPolicy::Ask);
    assert_eq!(config.claude.policy("read_file"), ToolPolicy::Auto);
    assert_eq!(config.claude.policy("no_such_tool"), ToolPolicy::Deny);
}

#[test]
fn unknown_keys_are_refused() {
    let err = toml::from_str::<Config>("hubb = \"x\"").unwrap_err();
    assert!(err.message().contains("unknown field"), "{err}");
}

#[test]
fn configured_policies_override_only_the_named_tools() {
    let config: Config =
        toml::from_str("[claude.tools]\nrun_shell = \"deny\"\nwrite_file = \"ask\"\n").unwrap();
    assert_eq!(config.claude.policy("run_shell"), ToolPolicy::Deny);
    assert_eq!(config.claude.policy("write_file"), ToolPolicy::Ask);
    assert_eq!(config.claude.policy("read_file"), ToolPolicy::Auto);
}

#[test]
fn the_default_executor_is_unset_and_not_written() {
    let config = Config::default();
    assert_eq!(config.default_executor, None);
    let text = toml::to_string_pretty(&config).unwrap();
    assert!(!text.contains("default_executor"), "{text}");
}

#[test]
fn an_unknown_default_executor_is_refused_with_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "default_executor = \"bash\"\n").unwrap();
    let args = GlobalArgs {
        config: Some(file.clone()),
        ..GlobalArgs::default()
    };
    let err = Loaded::load(&args).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "default_executor in {} is `bash`; expected claude, claude-code, shell, manual or external",
            file.display()
        )
    );
    std::fs::write(&file, "default_executor = \"manual\"\n").unwrap();
    let loaded = Loaded::load(&args).unwrap();
    assert_eq!(loaded.config.default_executor.as_deref(), Some("manual"));
}

/// `config.example.toml`, the documented configuration.
const EXAMPLE: &str = include_str!("../../config.example.toml");

#[test]
fn the_documented_example_holds_the_defaults_and_every_key() {
    let example: Config = toml::from_str(EXAMPLE).expect("config.example.toml parses");
    assert_eq!(
        toml::to_string_pretty(&example).unwrap(),
        toml::to_string_pretty(&Config::default()).unwrap(),
        "config.example.toml shows the defaults"
    );
    let documented = |key: &str| {
        EXAMPLE
            .lines()
            .map(|line| line.trim_start_matches("# ").trim_start())
            .any(|line| line.starts_with(&format!("{key} =")))
    };
    let mut every = toml::Table::try_from(Config {
        hub: Some("https://hub.example.com".into()),
        ca_cert: Some("/ca.pem".into()),
        default_executor: Some("manual".into()),
        claude_code: ClaudeCodeConfig {
            program: Some("/usr/local/bin/claude".into()),
            model: Some("claude-sonnet-4-5".into()),
            ..ClaudeCodeConfig::default()
        },
        external: ExternalConfig {
            program: Some("/bin/agent".into()),
            args: Vec::new(),
            env: [("AGENT_PROFILE".to_string(), "ci".to_string())].into(),
        },
        ..Config::default()
    })
    .unwrap();
    let claude = every.remove("claude").unwrap();
    let claude_code = every.remove("claude_code").unwrap();
    let external = every.remove("external").unwrap();
    let keys = every
        .keys()
        .chain(claude.as_table().unwrap().keys())
        .chain(claude_code.as_table().unwrap().keys())
        .chain(external.as_table().unwrap().keys());
    for key in keys {
        if key == "tools" || key == "env" {
            continue;
        }
        assert!(
            documented(key),
            "config.example.toml does not document `{key}`"
        );
    }
}
