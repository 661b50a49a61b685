//! The deploy files are valid as far as this machine can tell without a container engine:
//! the systemd unit passes `systemd-analyze verify` pointing at the built binary, the YAML
//! parses, and the settings they use exist as flags of `agenthub serve`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy")
}

#[test]
fn the_systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze not installed (deploy::the_systemd_unit_verifies)");
        return;
    }
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/agenthub.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/agenthub serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agenthub.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/agenthub", env!("CARGO_BIN_EXE_agenthub")),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Users and paths of the target machine do not exist here; anything else is a finding.
    let findings: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.is_empty())
        .filter(|line| {
            !line.contains("User=")
                && !line.contains("Group=")
                && !line.contains("/var/lib/agenthub")
        })
        .collect();
    assert!(findings.is_empty(), "systemd-analyze verify: {findings:?}");
}

#[test]
fn yaml_files_parse_and_name_real_settings() {
    let files = [
        "docker-compose.yml",
        "k8s/configmap.yaml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/pdb.yaml",
        "k8s/migrate-job.yaml",
        "k8s/uploads-pvc.yaml",
    ];
    let help = Command::new(env!("CARGO_BIN_EXE_agenthub"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let python_yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|status| status.success());
    for file in files {
        let path = deploy_dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        for word in text.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')) {
            if word.starts_with("AGENTHUB_") && word != "AGENTHUB_LOG" {
                assert!(
                    help.contains(word),
                    "{file} sets {word}, which `agenthub serve` does not read"
                );
            }
        }
        if python_yaml {
            let status = Command::new("python3")
                .args([
                    "-c",
                    "import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))",
                ])
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success(), "{file} is not valid YAML");
        }
    }
    if !python_yaml {
        eprintln!(
            "skipped YAML parsing: python3 with PyYAML not available (deploy::yaml_files_parse_and_name_real_settings)"
        );
    }
}
