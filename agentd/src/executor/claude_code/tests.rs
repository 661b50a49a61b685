//! Unit tests of `claude_code`.

use serde_json::json;

use super::*;

fn config(rules: &[(&str, ToolPolicy)]) -> ClaudeCodeConfig {
    ClaudeCodeConfig {
        tools: rules
            .iter()
            .map(|(rule, policy)| (rule.to_string(), *policy))
            .collect(),
        ..ClaudeCodeConfig::default()
    }
}

#[test]
fn the_most_specific_rule_decides_a_tool_call() {
    let config = config(&[
        ("Bash(git *)", ToolPolicy::Auto),
        ("Bash(git push*)", ToolPolicy::Deny),
        ("Bash", ToolPolicy::Ask),
        ("Read", ToolPolicy::Auto),
        ("Write(secrets/*)", ToolPolicy::Deny),
        ("*", ToolPolicy::Deny),
    ]);
    let bash = |command: &str| policy(&config, "Bash", &json!({"command": command}));
    assert_eq!(bash("git status"), ToolPolicy::Auto);
    assert_eq!(
        bash("git push origin main"),
        ToolPolicy::Deny,
        "the strictest match"
    );
    assert_eq!(bash("rm -rf build"), ToolPolicy::Ask);
    assert_eq!(
        policy(&config, "Read", &json!({"file_path": "/src/a/b.rs"})),
        ToolPolicy::Auto
    );
    assert_eq!(
        policy(&config, "Write", &json!({"file_path": "secrets/key.pem"})),
        ToolPolicy::Deny
    );
    assert_eq!(
        policy(&config, "Write", &json!({"file_path": "notes.md"})),
        ToolPolicy::Deny,
        "falls back to `*`"
    );
    assert_eq!(
        policy(
            &ClaudeCodeConfig::default(),
            "WebFetch",
            &json!({"url": "https://x"})
        ),
        ToolPolicy::Ask,
        "no rule asks"
    );
}
