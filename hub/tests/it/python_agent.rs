//! The Python reference agent (`docs/examples/python-agent/agent.py`) against a real hub on
//! 127.0.0.1, on both backends: it completes one step in MessagePack mode and another in
//! JSON mode. It needs a Python with the agent's requirements installed, named by
//! `AGENTHUB_TEST_PYTHON` (`.ci/run` sets it); without it the test prints that it was
//! skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::oneshot;

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::api;
use agenthub::ctx::{Ctx, Settings};

use crate::support::TestDb;

/// The Python interpreter to run the agent with, e.g. `.ci/venv/bin/python3`.
const PYTHON_VAR: &str = "AGENTHUB_TEST_PYTHON";

/// How long one run of the agent may take before it is killed and the test fails.
const AGENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The agent's name in the test workspace.
const AGENT_NAME: &str = "py-agent";

#[tokio::test(flavor = "multi_thread")]
async fn python_agent_completes_a_step_in_msgpack_and_in_json() {
    let test_name = "python_agent::python_agent_completes_a_step_in_msgpack_and_in_json";
    let Some(python) = std::env::var_os(PYTHON_VAR) else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {PYTHON_VAR} not set ({test_name})"
        );
        return;
    };
    for db in TestDb::all(test_name).await {
        let hub = Hub::start(db).await;
        let (key, token) = hub.team().await;
        let scratch = tempfile::tempdir().unwrap();

        // MessagePack: the task exists before the agent connects, so its `step.ready`
        // arrives in the replay after `welcome`.
        let input = json!({"pages": 3, "tags": ["q3", "draft"]});
        let first = hub.create_task(&key, "Draft the outline", &input).await;
        let agent = Agent::spawn(&python, &hub, &token, &[], &scratch.path().join("msgpack"));
        agent.expect_success().await;
        hub.expect_done(&key, &first, "Draft the outline", &input)
            .await;

        // JSON, with a state file: the agent connects first and the task follows, so its
        // `step.ready` may come live. The agent starts from seq 0, so it also replays the
        // first task's `step.ready`, whose claim gets `conflict` ("not mine").
        let state = scratch.path().join("last_seq");
        let state_arg = state.to_str().unwrap();
        let agent = Agent::spawn(
            &python,
            &hub,
            &token,
            &["--json", "--state", state_arg],
            &scratch.path().join("json"),
        );
        let input = json!({"text": "naïve café ✓"});
        let second = hub.create_task(&key, "Review the outline", &input).await;
        agent.expect_success().await;
        hub.expect_done(&key, &second, "Review the outline", &input)
            .await;
        let saved = std::fs::read_to_string(&state).unwrap();
        let last_seq: u64 = saved.trim().parse().unwrap();
        assert!(last_seq >= 2, "state file holds {saved:?}");
    }
}

/// A hub serving on an ephemeral port of 127.0.0.1, stopped on drop.
struct Hub {
    base: String,
    ctx: Ctx,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _db: TestDb,
    _data_dir: tempfile::TempDir,
}

impl Hub {
    async fn start(db: TestDb) -> Hub {
        let data_dir = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(
            db.store(),
            Settings {
                data_dir: data_dir.path().to_path_buf(),
                ..Settings::default()
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(api::serve_with_listener(
            listener,
            ctx.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Hub {
            base,
            ctx,
            http: reqwest::Client::new(),
            _stop: stop,
            _db: db,
            _data_dir: data_dir,
        }
    }

    /// The agent's URL: the base URL with the `ws` scheme (docs/protocol.md §3).
    fn ws_url(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }

    /// Workspace `acme` with its owner, the owner's API key and the agent; returns the API
    /// key and the agent token.
    async fn team(&self) -> (String, String) {
        let store = &self.ctx.store;
        let ws = accounts::create_workspace(store, "acme").await.unwrap();
        accounts::add_member(store, &ws.id, "aurora@example.com", None, Role::Owner)
            .await
            .unwrap();
        let key = accounts::create_api_key(store, &ws.id, "aurora@example.com", None)
            .await
            .unwrap()
            .secret;
        let agent = agents::create_agent(
            store,
            NewAgent {
                workspace_id: &ws.id,
                name: AGENT_NAME,
                owner: "aurora@example.com",
                capabilities: &[],
                max_concurrency: 1,
            },
        )
        .await
        .unwrap();
        (key, agent.token)
    }

    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Creates a one-step task assigned to the agent; returns the step's id.
    async fn create_task(&self, key: &str, title: &str, input: &Value) -> String {
        let body = json!({"title": format!("Task: {title}"), "steps": [
            {"key": "only", "title": title, "assignees": [AGENT_NAME], "input": input}]});
        let task = self.call(Method::POST, "/v1/tasks", key, Some(body)).await;
        assert_eq!(task["steps"][0]["status"], "ready", "{task}");
        task["steps"][0]["id"].as_str().unwrap().to_string()
    }

    /// Asserts that the step is `done` with the result the agent submits: its title and
    /// input, echoed.
    async fn expect_done(&self, key: &str, step_id: &str, title: &str, input: &Value) {
        let step = self
            .call(Method::GET, &format!("/v1/steps/{step_id}"), key, None)
            .await;
        assert_eq!(step["status"], "done", "{step}");
        assert_eq!(step["result"], json!({"echo": title, "input": input}));
        assert!(
            step["summary"].as_str().is_some_and(|s| s.contains(title)),
            "{step}"
        );
        assert_eq!(step["attempt"], 1, "{step}");
    }
}

/// A running `agent.py --once`, its output going to a log file; killed on drop.
struct Agent {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Agent {
    fn spawn(python: &std::ffi::OsStr, hub: &Hub, token: &str, args: &[&str], log: &Path) -> Agent {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("docs/examples/python-agent/agent.py");
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new(python)
            .arg(script)
            .args(["--hub", &hub.ws_url(), "--token", token, "--once"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("run {}: {err}", python.to_string_lossy()));
        Agent {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Waits for the agent to exit 0, killing it after [`AGENT_TIMEOUT`].
    async fn expect_success(mut self) {
        let status = match tokio::time::timeout(AGENT_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "the agent did not finish within {AGENT_TIMEOUT:?}; its output:\n{}",
                    self.output()
                );
            }
        };
        assert!(
            status.success(),
            "the agent exited with {status}; its output:\n{}",
            self.output()
        );
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
