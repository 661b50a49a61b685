//! `--ca-cert` end to end: the real hub serving HTTPS and WSS with a certificate from a
//! private CA; agentd trusts it only when given the CA.

use std::time::Duration;

use agenthub::api;
use agenthub::ctx::{Ctx, Settings};
use agenthub::store::Store;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;
use uuid::Uuid;

use crate::hub::{Team, create_team};
use crate::support::{Agentd, spawn, text, wait_exit};

/// A private CA and a certificate it issued for 127.0.0.1 and localhost: (CA PEM,
/// certificate PEM, key PEM).
fn private_ca() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Acme private CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The hub in this process, serving TLS with `cert`/`key` from `dir`; its https URL.
async fn tls_hub(dir: &std::path::Path, cert: &str, key: &str) -> (String, Team) {
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let store = Store::open_data_dir(&data_dir).unwrap();
    store.migrate().await.unwrap();
    let team = create_team(&store).await;
    let ctx = Ctx::new(
        store,
        Settings {
            data_dir: data_dir.clone(),
            ..Settings::default()
        },
    );
    std::fs::write(dir.join("hub.pem"), cert).unwrap();
    std::fs::write(dir.join("hub.key"), key).unwrap();
    let tls = api::load_tls(&dir.join("hub.pem"), &dir.join("hub.key"))
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(api::serve_tls_with_listener(
        listener,
        ctx,
        tls,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    (url, team)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_with_a_private_ca_is_reached_over_tls_only_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca();
    let (url, team) = tls_hub(dir.path(), &cert, &key).await;
    let ca_file = dir.path().join("acme-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let ca_file = ca_file.display().to_string();

    let agentd = Agentd::new();
    let refused = agentd.run(&["login", "--hub", &url, "--token", &team.min_token]);
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&refused.stderr)
    );

    let login = agentd.run(&[
        "login",
        "--hub",
        &url,
        "--token",
        &team.min_token,
        "--ca-cert",
        &ca_file,
    ]);
    assert!(login.status.success(), "{}", text(&login.stderr));
    // REST over TLS: the teammate command creates a task.
    let created = agentd.run(&[
        "--ca-cert",
        &ca_file,
        "--json",
        "task",
        "create",
        "--title",
        "Check TLS",
        "--assignee",
        "min-laptop",
        "--executor",
        "shell",
        "--command",
        "echo over-tls > tls.txt",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let task: Value = serde_json::from_slice(&created.stdout).unwrap();
    let step_id: Uuid = task["steps"][0]["id"].as_str().unwrap().parse().unwrap();
    // The WebSocket over TLS: the daemon runs the step and delivers its result.
    let child = spawn(
        &agentd,
        &["--ca-cert", &ca_file, "run", "--once", "--no-notify"],
    );
    let out = wait_exit(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(agentd.work_dir(step_id).join("tls.txt")).unwrap(),
        "over-tls\n"
    );
}
