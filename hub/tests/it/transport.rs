//! What a hostile or broken client meets at the hub's door, on real sockets: deadlines for
//! headers and bodies, the cap on connections that never send a request (plain and TLS),
//! the REST rate limit, the error envelope on every error, and logs that keep secrets and
//! payloads out even at `trace`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use agenthub_protocol::Codec;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use agenthub::api;
use agenthub::ctx::{Ctx, Settings};
use agenthub::store::Backend;

use crate::gateway::{Agent, Hub, expect_ok, one_step, team};
use crate::support::TestDb;

/// Longest a test waits for the hub to react; never an assertion on speed.
const PATIENCE: Duration = Duration::from_secs(20);

fn addr_of(hub: &Hub) -> SocketAddr {
    hub.base.trim_start_matches("http://").parse().unwrap()
}

/// Opens a connection and sends the start of a request that never ends.
async fn half_sent(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: 1")
        .await
        .unwrap();
    stream
}

/// Whether the hub closed `stream` (or reset it) within [`PATIENCE`].
async fn closed_by_hub(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_do_not_stop_healthz() {
    let settings = Settings {
        // Only the cap can help here: the header deadline is far away.
        header_timeout_ms: 120_000,
        max_pending_connections: 16,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let addr = addr_of(&hub);
    let mut stalled = Vec::new();
    for _ in 0..100 {
        stalled.push(half_sent(addr).await);
    }
    for _ in 0..3 {
        let resp = tokio::time::timeout(
            PATIENCE,
            hub.http.get(format!("{}/healthz", hub.base)).send(),
        )
        .await
        .expect("/healthz answers while clients hold half-sent requests")
        .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    // The oldest half-sent requests made room; the newest are still waiting.
    assert!(
        closed_by_hub(&mut stalled[0]).await,
        "the oldest was not closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    let settings = Settings {
        header_timeout_ms: 500,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let addr = addr_of(&hub);
    let mut stalled = half_sent(addr).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_hub(&mut stalled).await,
        "half-sent request kept open"
    );
    assert!(
        closed_by_hub(&mut silent).await,
        "silent connection kept open"
    );
    // A kept-alive connection that sends its requests at once serves past the deadline.
    for _ in 0..12 {
        let resp = hub
            .http
            .get(format!("{}/healthz", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tls_listener_has_the_same_deadline_and_cap() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let db = TestDb::sqlite().await;
    let ctx = Ctx::new(
        db.store(),
        Settings {
            data_dir: dir.path().to_path_buf(),
            header_timeout_ms: 1_500,
            max_pending_connections: 16,
            ..Settings::default()
        },
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = api::load_tls(&cert_path, &key_path).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve_tls_with_listener(
        listener,
        ctx,
        tls,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    // Connections that never start their TLS handshake.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    let resp = tokio::time::timeout(
        PATIENCE,
        client
            .get(format!("https://localhost:{}/healthz", addr.port()))
            .send(),
    )
    .await
    .expect("/healthz answers over TLS while handshakes stall")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The newest stalled handshake is closed by the deadline, not kept for ever.
    let mut newest = stalled.pop().unwrap();
    assert!(
        closed_by_hub(&mut newest).await,
        "stalled handshake kept open"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_sent_at_a_byte_a_second_is_cut_with_408() {
    let settings = Settings {
        body_timeout_ms: 1_000,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let team = team(&hub.ctx).await;
    let addr = addr_of(&hub);
    for (method, path) in [
        ("POST", "/v1/tasks".to_string()),
        ("PUT", "/v1/files?name=slow.txt".to_string()),
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
            team.key
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let trickle = tokio::spawn(async move {
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
            }
        });
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut bytes)).await;
        trickle.abort();
        let text = String::from_utf8_lossy(&bytes).to_string();
        assert!(text.starts_with("HTTP/1.1 408"), "{method} {path}: {text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "timeout", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("ms"),
            "{body}"
        );
    }
    // Nothing half-written stays behind.
    let (status, tasks) = hub.call(Method::GET, "/v1/tasks", &team.key, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tasks["meta"]["count"], 0, "{tasks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_session_outlives_the_request_deadlines() {
    let settings = Settings {
        header_timeout_ms: 500,
        body_timeout_ms: 500,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let team = team(&hub.ctx).await;
    let mut agent = Agent::connect(&hub, &team.min, Codec::Json, 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steps = hub
        .create_task(&team.key, one_step("Outline", &["min-laptop"]))
        .await;
    let step_id = &steps[0].1;
    agent.ready(step_id).await;
    expect_ok(&agent.claim(step_id).await, Some("claimed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_the_hub_sends_is_in_the_envelope() {
    let name = "transport::every_error_the_hub_sends_is_in_the_envelope";
    for db in TestDb::all(name).await {
        let hub = Hub::start(db, Settings::default()).await;
        let team = team(&hub.ctx).await;
        let step_id = uuid::Uuid::now_v7();
        let cases: Vec<(Method, String, Option<&str>, u16, &str)> = vec![
            (
                Method::GET,
                "/v1/tasks?limit=abc".into(),
                Some(&team.key),
                400,
                "bad_request",
            ),
            (
                Method::GET,
                "/v1/tasks/%FF".into(),
                Some(&team.key),
                400,
                "bad_request",
            ),
            (
                Method::GET,
                "/v1/agents/%FF%FE".into(),
                Some(&team.key),
                400,
                "bad_request",
            ),
            (
                Method::GET,
                "/v1/nowhere".into(),
                Some(&team.key),
                404,
                "not_found",
            ),
            (Method::GET, "/v1/tasks".into(), None, 401, "unauthorized"),
            (
                Method::DELETE,
                "/v1/tasks".into(),
                Some(&team.key),
                405,
                "bad_request",
            ),
            // Not a WebSocket handshake.
            (
                Method::GET,
                "/v1/agent/connect".into(),
                Some(&team.min),
                400,
                "unsupported",
            ),
        ];
        for (method, path, token, want, code) in cases {
            let mut req = hub
                .http
                .request(method.clone(), format!("{}{path}", hub.base));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .map(|value| value.to_str().unwrap().to_string());
            let text = resp.text().await.unwrap();
            assert_eq!(status, want, "{method} {path}: {text}");
            assert_eq!(
                content_type.as_deref(),
                Some("application/json"),
                "{method} {path}"
            );
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert_eq!(body["error"]["code"], code, "{method} {path}: {text}");
            assert!(
                !body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{method} {path}: {text}"
            );
        }
        // An over-limit chunked body: the limit is found while reading.
        let chunks = vec![
            Ok::<_, std::io::Error>(vec![b' '; api::MAX_JSON_BODY]),
            Ok(vec![b' '; 1024]),
        ];
        let resp = hub
            .http
            .post(format!("{}/v1/steps/{step_id}/approve", hub.base))
            .bearer_auth(&team.key)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_large", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rest_rate_limit_answers_429_with_retry_after() {
    // Per token: 2 a second, so a burst of 10.
    let settings = Settings {
        rate_limit_per_key: 2,
        rate_limit_per_address: 0,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let team = team(&hub.ctx).await;
    let get = |token: &str| {
        hub.http
            .get(format!("{}/v1/tasks", hub.base))
            .bearer_auth(token)
            .send()
    };
    for _ in 0..10 {
        assert_eq!(get(&team.key).await.unwrap().status(), StatusCode::OK);
    }
    let resp = get(&team.key).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Another member's key has its own bucket; the operators' endpoints are not limited.
    assert_eq!(get(&team.min_key).await.unwrap().status(), StatusCode::OK);
    for _ in 0..20 {
        let resp = hub
            .http
            .get(format!("{}/healthz", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // Nothing was lost: a refused write is not half-done, and works after the wait.
    let create = |key: String| {
        hub.http
            .post(format!("{}/v1/tasks", hub.base))
            .bearer_auth(key)
            .json(&one_step("Limited", &["min-laptop"]))
            .send()
    };
    let refused = create(team.key.clone()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let created = create(team.key.clone()).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let (_, tasks) = hub
        .call(Method::GET, "/v1/tasks", &team.min_key, None)
        .await;
    assert_eq!(tasks["meta"]["count"], 1, "{tasks}");

    // Per address: every token from one address shares its bucket.
    let settings = Settings {
        rate_limit_per_key: 0,
        rate_limit_per_address: 2,
        ..Settings::default()
    };
    let hub = Hub::start(TestDb::sqlite().await, settings).await;
    let team = crate::gateway::team(&hub.ctx).await;
    let mut statuses = Vec::new();
    for round in 0..12 {
        let token = if round % 2 == 0 {
            &team.key
        } else {
            &team.min_key
        };
        let resp = hub
            .http
            .get(format!("{}/v1/tasks", hub.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[200; 10], "{statuses:?}");
    assert!(
        statuses[10..].iter().all(|status| *status == 429),
        "{statuses:?}"
    );
    // Unauthenticated requests count too.
    let resp = hub
        .http
        .get(format!("{}/v1/tasks", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// A marker that must never reach the log.
const MARKER: &str = "sekrit-8c1f2d-marker";

#[tokio::test(flavor = "multi_thread")]
async fn secrets_and_payloads_stay_out_of_trace_logs() {
    let name = "transport::secrets_and_payloads_stay_out_of_trace_logs";
    for db in TestDb::all(name).await {
        let ctx = Ctx::new(db.store(), Settings::default());
        let team = team(&ctx).await;
        let data_dir = tempfile::tempdir().unwrap();
        let log_path = data_dir.path().join("hub.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_agenthub"));
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("AGENTHUB_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap());
        match db.backend() {
            Backend::Postgres => {
                command
                    .arg("--data-dir")
                    .arg(data_dir.path())
                    .args(["--database-url", db.url()]);
            }
            Backend::Sqlite => {
                let sqlite_dir = std::path::Path::new(db.url()).parent().unwrap();
                command.arg("--data-dir").arg(sqlite_dir);
            }
        }
        let mut child = command.spawn().expect("start agenthub serve");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(resp) = http.get(format!("{base}/readyz")).send().await
                && resp.status() == StatusCode::OK
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "agenthub serve did not become ready");

        // A token in the query string, as a careless client sends it.
        let resp = http
            .get(format!("{base}/v1/tasks?token={}&limit=5", team.min))
            .bearer_auth(&team.key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        // A task whose texts hold a secret, done by an agent whose frames carry it.
        let resp = http
            .post(format!("{base}/v1/tasks"))
            .bearer_auth(&team.key)
            .json(
                &json!({"title": "Rotate keys", "description": format!("the password is {MARKER}"),
                "steps": [{"key": "only", "title": "Rotate", "assignees": ["min-laptop"],
                           "input": {"secret": MARKER}}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let task: Value = resp.json().await.unwrap();
        let step_id = task["steps"][0]["id"].as_str().unwrap().to_string();
        let ws_url = format!("ws://127.0.0.1:{port}/v1/agent/connect?token={}", team.min);
        let mut agent = Agent::open_url(&ws_url, &team.min, Codec::Json).await;
        agent.hello(0).await;
        let (attempt, _) = agent.ready(&step_id).await;
        expect_ok(&agent.claim(&step_id).await, Some("claimed"));
        let reply = agent
            .submit(&step_id, attempt, json!({"note": format!("used {MARKER}")}))
            .await;
        expect_ok(&reply, Some("done"));
        let resp = http
            .get(format!("{base}/v1/steps/{step_id}"))
            .bearer_auth(&team.key)
            .send()
            .await
            .unwrap();
        assert!(
            resp.text().await.unwrap().contains(MARKER),
            "the result is stored"
        );
        drop(agent);
        let _ = child.kill();
        let _ = child.wait();

        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            log.contains("DEBUG") && log.contains("/v1/tasks"),
            "the hub did not log in detail: {} bytes",
            log.len()
        );
        // Query parameters are logged as byte lists (`[115, 101, …]`).
        let marker_bytes = format!("{:?}", MARKER.as_bytes());
        let marker_bytes = marker_bytes.trim_start_matches('[').trim_end_matches(']');
        for (what, secret) in [
            ("the marker", MARKER),
            ("the marker's bytes", marker_bytes),
            ("the agent token", team.min.as_str()),
            ("the API key", team.key.as_str()),
        ] {
            if let Some(at) = log.find(secret) {
                let start = log[..at].rfind('\n').unwrap_or(0);
                let end = log[at..].find('\n').map_or(log.len(), |end| at + end);
                panic!(
                    "{what} is in the {:?} log: {}",
                    db.backend(),
                    &log[start..end]
                );
            }
        }
    }
}
