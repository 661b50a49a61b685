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
