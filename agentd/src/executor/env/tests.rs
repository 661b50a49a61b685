//! Unit tests of `env`.

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .collect()
}

#[test]
fn only_the_basics_and_the_named_variables_are_inherited() {
    let env = ChildEnv::inherit_from(
        vars(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/home/min"),
            ("LANG", "C.UTF-8"),
            ("TMPDIR", "/tmp/min"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("TEAM_REGISTRY", "registry.example.com"),
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("AGENTD_TOKEN", "aha_secret"),
        ]),
        &["TEAM_REGISTRY".into(), "ANTHROPIC_API_KEY".into()],
    );
    assert_eq!(env.get("PATH"), Some(OsStr::new("/usr/bin")));
    assert_eq!(env.get("HOME"), Some(OsStr::new("/home/min")));
    assert_eq!(env.get("LANG"), Some(OsStr::new("C.UTF-8")));
    assert_eq!(env.get("TMPDIR"), Some(OsStr::new("/tmp/min")));
    assert_eq!(
        env.get("TEAM_REGISTRY"),
        Some(OsStr::new("registry.example.com"))
    );
    assert_eq!(env.get("AWS_SECRET_ACCESS_KEY"), None);
    assert_eq!(env.get("ANTHROPIC_API_KEY"), None, "named, still refused");
    assert_eq!(env.get("AGENTD_TOKEN"), None);
}

#[test]
fn a_secret_cannot_be_set_whatever_its_case() {
    let mut env = ChildEnv::default();
    let err = env.set("anthropic_api_key", "sk-ant").unwrap_err();
    assert!(err.contains("never passed"), "{err}");
    assert!(env.set("AGENTD_TOKEN", "aha").is_err());
    assert!(env.set("A=B", "x").is_err());
    assert!(env.set("", "x").is_err());
    env.set("RUST_LOG", "debug").unwrap();
    assert_eq!(env.get("RUST_LOG"), Some(OsStr::new("debug")));
}

#[test]
fn a_step_env_must_be_an_object_of_strings() {
    let mut env = ChildEnv::default();
    assert_eq!(
        env.set_json(&serde_json::json!(["A"]), "input.env")
            .unwrap_err(),
        "input.env must be an object of strings, e.g. {\"RUST_LOG\": \"debug\"}"
    );
    assert_eq!(
        env.set_json(&serde_json::json!({"N": 1}), "input.env")
            .unwrap_err(),
        "input.env.N must be a string"
    );
    env.set_json(&serde_json::json!({"N": "1"}), "input.env")
        .unwrap();
    assert_eq!(env.get("N"), Some(OsStr::new("1")));
}

#[cfg(unix)]
#[tokio::test]
async fn a_child_sees_exactly_the_environment_given() {
    let mut env = ChildEnv::inherit_from(vars(&[("PATH", "/usr/bin:/bin")]), &[]);
    env.set("STEP_VAR", "yes").unwrap();
    let mut command = Command::new("/usr/bin/env");
    env.apply(&mut command);
    let output = command.output().await.unwrap();
    let mut lines: Vec<_> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(lines, ["PATH=/usr/bin:/bin", "STEP_VAR=yes"]);
}
