//! The launchd agent agentd generates for macOS, parsed as a property list (with
//! Python's plistlib, which reads the same XML format as `plutil -lint`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use agentd::cmd::service::launchd_plist;
use serde_json::{Value, json};

/// The plist parsed by plistlib, as JSON.
fn parse_plist(text: &str) -> Value {
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with plistlib");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not a valid plist: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_launchd_agent_is_a_valid_property_list_that_runs_agentd() {
    let plist = launchd_plist(
        Path::new("/Users/min/bin/agentd <dev> & co"),
        Some(Path::new(
            "/Users/min/Library/Application Support/agentd/config.toml",
        )),
        Path::new("/Users/min/Library/Logs/agentd.log"),
    );
    let parsed = parse_plist(&plist);
    assert_eq!(parsed["Label"], "dev.agenthub.agentd");
    assert_eq!(
        parsed["ProgramArguments"],
        json!([
            "/Users/min/bin/agentd <dev> & co",
            "run",
            "--config",
            "/Users/min/Library/Application Support/agentd/config.toml"
        ])
    );
    assert_eq!(parsed["RunAtLoad"], true);
    assert_eq!(parsed["KeepAlive"], json!({"SuccessfulExit": false}));
    assert_eq!(
        parsed["StandardErrorPath"],
        "/Users/min/Library/Logs/agentd.log"
    );
    let without_config = parse_plist(&launchd_plist(
        Path::new("/usr/local/bin/agentd"),
        None,
        Path::new("/tmp/agentd.log"),
    ));
    assert_eq!(
        without_config["ProgramArguments"],
        json!(["/usr/local/bin/agentd", "run"])
    );
}
