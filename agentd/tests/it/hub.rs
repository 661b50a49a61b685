//! The real AgentHub hub for end-to-end tests: in this process (`Hub::start`) or as a
//! child process that can be killed with SIGKILL and restarted on the same data dir and
//! port (`HubProcess`), with a team set up through `agenthub::accounts` / `agents`.
//!
//! The child process is this test binary run again with `--exact hub::hub_process_entry`
//! and the hub's `serve` flags in `AGENTD_IT_HUB_ARGS`: the entry parses them with the
//! hub's own `DbArgs` / `ServeArgs` and serves the way `agenthub serve` does, so the hub
//! code is exactly the code this binary was built with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use agenthub::accounts::{self, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::api;
use agenthub::config::{DbArgs, ServeArgs};
use agenthub::ctx::{Ctx, Settings};
use agenthub::store::Store;

/// Environment variable carrying the `serve` flags of a hub child process.
const HUB_ARGS_VAR: &str = "AGENTD_IT_HUB_ARGS";

/// A workspace `acme`: aurora (owner, `owner_key`), min and duan (members with API keys);
/// agents `min-laptop` (min's, token `min_token`) and `duan-desktop` (duan's).
#[derive(Debug, Clone)]
pub struct Team {
    pub owner_key: String,
    pub min_key: String,
    pub min_token: String,
    pub duan_token: String,
}

/// Creates the team in `store`.
pub async fn create_team(store: &Store) -> Team {
    let workspace = accounts::create_workspace(store, "acme").await.unwrap();
    for (email, role) in [
        ("aurora@example.com", Role::Owner),
        ("min@example.com", Role::Member),
        ("duan@example.com", Role::Member),
    ] {
        accounts::add_member(store, &workspace.id, email, None, role)
            .await
            .unwrap();
    }
    let owner_key = accounts::create_api_key(store, &workspace.id, "aurora@example.com", None)
        .await
        .unwrap()
        .secret;
    let min_key = accounts::create_api_key(store, &workspace.id, "min@example.com", None)
        .await
        .unwrap()
        .secret;
    let mut tokens = Vec::new();
    for (name, owner) in [
        ("min-laptop", "min@example.com"),
        ("duan-desktop", "duan@example.com"),
    ] {
        let created = agents::create_agent(
            store,
            NewAgent {
                workspace_id: &workspace.id,
                name,
                owner,
                capabilities: &[],
                max_concurrency: 4,
            },
        )
        .await
        .unwrap();
        tokens.push(created.token);
    }
    Team {
        owner_key,
        min_key,
        min_token: tokens[0].clone(),
        duan_token: tokens[1].clone(),
    }
}

/// REST calls to a hub with an API key or agent token.
#[derive(Debug, Clone)]
pub struct Rest {
    pub base: String,
    http: reqwest::Client,
}

impl Rest {
    pub fn new(base: &str) -> Rest {
        Rest {
            base: base.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the hub answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a one-step task; returns the step id.
    pub async fn create_step(&self, key: &str, step: Value) -> String {
        let title = step["title"].as_str().unwrap_or("Step").to_string();
        let mut step = step;
        step["key"] = json!("only");
        let (status, task) = self
            .call(
                Method::POST,
                "/v1/tasks",
                key,
                Some(json!({"title": title, "steps": [step]})),
            )
            .await;
        assert_eq!(status, 201, "{task}");
        task["steps"][0]["id"].as_str().unwrap().to_string()
    }

    pub async fn step(&self, key: &str, step_id: &str) -> Value {
        let (status, step) = self
            .call(Method::GET, &format!("/v1/steps/{step_id}"), key, None)
            .await;
        assert_eq!(status, 200, "{step}");
        step
    }

    /// Polls the step until `done(step)` holds (at most `within`); returns the step.
    pub async fn wait_step(
        &self,
        key: &str,
        step_id: &str,
        within: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let step = self.step(key, step_id).await;
            if done(&step) {
                return step;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the step did not become {what} within {within:?}: {step:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every event in the caller's stream.
    pub async fn events(&self, key: &str) -> Vec<Value> {
        let (status, list) = self
            .call(Method::GET, "/v1/events?limit=1000", key, None)
            .await;
        assert_eq!(status, 200, "{list}");
        list["events"].as_array().cloned().unwrap_or_default()
    }
}

/// A hub serving in this process on an ephemeral port, stopped on drop.
pub struct Hub {
    pub url: String,
    pub rest: Rest,
    pub team: Team,
    stop: Option<oneshot::Sender<()>>,
    sweeper: tokio::task::JoinHandle<()>,
    _data_dir: tempfile::TempDir,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.sweeper.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Hub {
    /// A hub on a fresh SQLite data dir with the team set up.
    pub async fn start() -> Hub {
        Hub::start_with_lease(Settings::default().lease_ms).await
    }

    /// [`Hub::start`] with claims that hold a step for `lease_ms` unless renewed.
    pub async fn start_with_lease(lease_ms: u64) -> Hub {
        let data_dir = tempfile::tempdir().unwrap();
        let store = Store::open_data_dir(data_dir.path()).unwrap();
        store.migrate().await.unwrap();
        let team = create_team(&store).await;
        let ctx = Ctx::new(
            store,
            Settings {
                data_dir: data_dir.path().to_path_buf(),
                lease_ms,
                ..Settings::default()
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(api::serve_with_listener(
            listener,
            ctx.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        let sweeper = tokio::spawn(api::run_sweeper(ctx, Duration::from_millis(100)));
        Hub {
            rest: Rest::new(&url),
            url,
            team,
            stop: Some(stop),
            sweeper,
            _data_dir: data_dir,
        }
    }
}

/// A hub in a child process: `serve --data-dir DIR --listen 127.0.0.1:PORT` plus extra
/// flags. Killed on drop.
pub struct HubProcess {
    pub url: String,
    pub rest: Rest,
    pub team: Team,
    pub data_dir: tempfile::TempDir,
    listen: String,
    extra: Vec<String>,
    child: Option<Child>,
    n_starts: u32,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl HubProcess {
    /// Sets up the team on a fresh data dir and starts the hub with `extra` flags.
    pub async fn start(extra: &[&str]) -> HubProcess {
        let data_dir = tempfile::tempdir().unwrap();
        let team = {
            let store = Store::open_data_dir(data_dir.path()).unwrap();
            store.migrate().await.unwrap();
            create_team(&store).await
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let listen = format!("127.0.0.1:{port}");
        let url = format!("http://{listen}");
        let mut hub = HubProcess {
            rest: Rest::new(&url),
            url,
            team,
            data_dir,
            listen,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            child: None,
            n_starts: 0,
        };
        hub.restart().await;
        hub
    }

    /// Starts the hub (again) on the same data dir and port; waits until it is healthy.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the hub is already running");
        self.n_starts += 1;
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir.path().display().to_string(),
            "--listen".to_string(),
            self.listen.clone(),
        ];
        args.extend(self.extra.iter().cloned());
        let log = std::fs::File::create(self.log_path(self.n_starts)).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hub::hub_process_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HUB_ARGS_VAR, serde_json::to_string(&args).unwrap())
            .env("AGENTHUB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the hub process");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        loop {
            let healthy = http
                .get(format!("{}/healthz", self.url))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the hub process exited with {status}: {}", self.logs());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the hub did not become healthy within 20 s: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the hub process (by its PID) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.data_dir.path().join(format!("hub-{start}.log"))
    }

    /// What every run of the hub logged.
    pub fn logs(&self) -> String {
        (1..=self.n_starts)
            .map(|start| std::fs::read_to_string(self.log_path(start)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }
}

#[derive(Debug, Parser)]
struct ServeCli {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

/// The entry point of a hub child process (see the module docs); returns at once when
/// this binary was not started as one.
#[test]
fn hub_process_entry() {
    let Ok(args) = std::env::var(HUB_ARGS_VAR) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("hub args are JSON");
    let cli = ServeCli::parse_from(std::iter::once("agenthub".to_string()).chain(args));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(serve(cli));
}

async fn serve(cli: ServeCli) {
    let data_dir: &Path = cli.db.data_dir.as_deref().expect("--data-dir is given");
    let store = cli.db.open_store().expect("open the store");
    store.migrate().await.expect("migrate");
    let ctx = Ctx::new(store, cli.serve.settings(data_dir.to_path_buf()));
    let listener = TcpListener::bind(cli.serve.listen)
        .await
        .expect("listen on the hub's address");
    tokio::spawn(api::run_sweeper(
        ctx.clone(),
        Duration::from_millis(cli.serve.sweep_interval_ms),
    ));
    api::serve_with_listener(listener, ctx, std::future::pending())
        .await
        .expect("serve");
}
