//! The hub as an A2A 1.0 server, checked with the official Python SDK (`a2a-sdk` 1.3.0)
//! as the client, against a real hub on 127.0.0.1 on both backends, with the step done
//! by an agent over the real WebSocket protocol: discovery, a streamed task to its
//! completion, a human approval in between (rejected once, then approved, by follow-up
//! messages), an agent's question answered by a follow-up message, cancel, and a push
//! notification received by a local receiver; and the bad inputs (unknown workspace or
//! agent, bad JSON-RPC, wrong version, no or an invalid token, another workspace's token
//! or task).
//!
//! The SDK is installed from PyPI into a virtualenv under the target directory on first
//! use (`AGENTHUB_TEST_A2A_PYTHON` names a Python that has it instead); when it cannot be
//! installed the SDK tests print why they were skipped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agenthub_protocol::{ClientFrame, Codec, ServerFrame, StepBlock};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use agenthub::ctx::Settings;
use agenthub::webhooks::WebhookSettings;
use agenthub::webhooks::deliver::run_worker;

use crate::gateway::{Agent, Hub, Team, team, team_named};
use crate::support::TestDb;

/// A Python that has `a2a-sdk` installed.
const PYTHON_VAR: &str = "AGENTHUB_TEST_A2A_PYTHON";
/// The SDK version the tests use.
const SDK: &str = "a2a-sdk[http-server]==1.3.0";
const WAIT: Duration = Duration::from_secs(30);

static PYTHON: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// The Python with the SDK: `AGENTHUB_TEST_A2A_PYTHON`, else a virtualenv under the
/// target directory, created once; `Err` says why there is none.
pub(crate) async fn sdk_python() -> Result<PathBuf, String> {
    PYTHON
        .get_or_init(|| async {
            if let Some(python) = std::env::var_os(PYTHON_VAR) {
                return Ok(PathBuf::from(python));
            }
            let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("a2a-sdk-1.3.0");
            let python = venv.join("bin/python3");
            let marker = venv.join(".installed");
            if marker.exists() {
                return Ok(python);
            }
            let run = |program: &Path, args: &[&str]| {
                let output = std::process::Command::new(program).args(args).output();
                match output {
                    Ok(output) if output.status.success() => Ok(()),
                    Ok(output) => Err(format!(
                        "{} {}: {}",
                        program.display(),
                        args.join(" "),
                        String::from_utf8_lossy(&output.stderr).trim()
                    )),
                    Err(err) => Err(format!("{}: {err}", program.display())),
                }
            };
            let venv_text = venv.to_string_lossy().to_string();
            tokio::task::spawn_blocking(move || {
                run(Path::new("python3"), &["-m", "venv", "--clear", &venv_text])?;
                run(
                    &python,
                    &[
                        "-m",
                        "pip",
                        "install",
                        "-q",
                        "--disable-pip-version-check",
                        SDK,
                    ],
                )?;
                std::fs::write(&marker, b"").map_err(|err| err.to_string())?;
                Ok(python)
            })
            .await
            .map_err(|err| err.to_string())?
        })
        .await
        .clone()
}

pub(crate) fn skipped(test_name: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {why} ({test_name})");
}

/// The Python with the SDK, or `None` when there is none: then the test was skipped and
/// it says why.
pub(crate) async fn sdk_or_skip(test_name: &str) -> Option<PathBuf> {
    match sdk_python().await {
        Ok(python) => Some(python),
        Err(why) => {
            skipped(test_name, &format!("no a2a-sdk: {why}"));
            None
        }
    }
}

/// Runs a scenario of hub/tests/a2a/client.py; its JSON output.
async fn client(python: &Path, scenario: &str, base: &str, token: &str, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/a2a/client.py");
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(python)
            .arg(&script)
            .arg(scenario)
            .arg(base)
            .arg(token)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("the A2A client's `{scenario}` took over 90 s"))
    .unwrap();
    assert!(
        output.status.success(),
        "the A2A client's `{scenario}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "`{scenario}` printed no JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Hub settings for these tests: heartbeats often enough to keep idle test agents'
/// reads alive, webhooks to 127.0.0.1 allowed and polled often.
fn settings() -> Settings {
    Settings {
        heartbeat_interval_ms: 1_000,
        webhooks: WebhookSettings {
            allow_private: true,
            poll_ms: 50,
            retry_base_ms: 50,
            ..WebhookSettings::default()
        },
        ..Settings::default()
    }
}

/// A hub with the webhook worker, the team of [`team`] and `spare` published as a skill.
struct A2aHub {
    hub: Hub,
    team: Team,
    base: String,
    stop: CancellationToken,
}

impl Drop for A2aHub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl A2aHub {
    async fn start(db: TestDb) -> A2aHub {
        let hub = Hub::start_public(db, settings()).await;
        let stop = CancellationToken::new();
        tokio::spawn(run_worker(hub.ctx.clone(), stop.clone()));
        let team = team(&hub.ctx).await;
        let workspace = agenthub::accounts::find_workspace(&hub.ctx.store, "acme")
            .await
            .unwrap();
        let (status, skill) = hub
            .call(
                Method::PUT,
                "/v1/agents/spare/a2a",
                &team.key,
                Some(json!({"description": "Writes and reviews release notes.",
                    "examples": ["Write the release notes for 2.4"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{skill}");
        let base = format!("{}/a2a/{}", hub.base, workspace.id);
        A2aHub {
            hub,
            team,
            base,
            stop,
        }
    }

    /// A JSON-RPC call with `A2A-Version: 1.0` and `token`: the HTTP status and body.
    async fn rpc(&self, token: Option<&str>, method: &str, params: Value) -> (StatusCode, Value) {
        let mut req = self
            .hub
            .http
            .post(&self.base)
            .header("A2A-Version", "1.0")
            .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.json().await.unwrap())
    }

    /// A JSON-RPC call as aurora (the team's API key): the answer, with HTTP 200.
    async fn call(&self, method: &str, params: Value) -> Value {
        let (status, body) = self.rpc(Some(&self.team.key), method, params).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// A request to a JSON-RPC endpoint (`url`) with aurora's key, and `A2A-Version`
    /// when given: for the requests [`A2aHub::rpc`] would not send.
    fn raw_rpc(&self, url: &str, version: Option<&str>) -> reqwest::RequestBuilder {
        let req = self.hub.http.post(url).bearer_auth(&self.team.key);
        match version {
            Some(version) => req.header("A2A-Version", version),
            None => req,
        }
    }

    /// A one-step task for `spare` created over REST with `key`: its id.
    async fn create_task(&self, key: &str, title: &str) -> String {
        let one_step = crate::gateway::one_step(title, &["spare"]);
        self.hub.create_task_ids(key, one_step).await.0
    }

    /// Runs the WebSocket agent `spare` until the hub closes its session: it claims
    /// every step pushed to it; one titled "… slow …" it keeps without an answer, one
    /// titled "… question …" it asks about once and submits with the answer; any other
    /// it submits at once, naming the rework comment when there is one.
    async fn play_agent(&self) -> tokio::task::JoinHandle<()> {
        let mut agent = Agent::connect(&self.hub, &self.team.spare, Codec::Json, 0).await;
        tokio::spawn(async move {
            let mut asked: HashMap<uuid::Uuid, u32> = HashMap::new();
            loop {
                let frame = if agent.events.is_empty() {
                    match agent.recv().await {
                        Ok(frame) => frame,
                        Err(_) => return,
                    }
                } else {
                    agent.events.remove(0)
                };
                match frame {
                    ServerFrame::StepReady(ready) => {
                        let step = ready.step;
                        let step_id = step.step_id.to_string();
                        agent.claim_attempt(&step_id, Some(step.attempt)).await;
                        if step.title.contains("slow") {
                            continue;
                        }
                        if step.title.contains("question") {
                            let attempt = step.attempt;
                            agent
                                .request(|id| {
                                    ClientFrame::StepBlock(StepBlock {
                                        id,
                                        step_id: step.step_id,
                                        attempt,
                                        question: "Which format, markdown or html?".into(),
                                        options: vec!["markdown".into(), "html".into()],
                                    })
                                })
                                .await;
                            asked.insert(step.step_id, attempt);
                            continue;
                        }
                        let result = json!({"text": format!("done: {}", step.title),
                            "rework": step.rework_comment});
                        agent.submit(&step_id, step.attempt, result).await;
                    }
                    ServerFrame::InputAnswered(answered) => {
                        if let Some(attempt) = asked.remove(&answered.step_id) {
                            let result = json!({"format": answered.answer});
                            agent
                                .submit(&answered.step_id.to_string(), attempt, result)
                                .await;
                        }
                    }
                    _ => {}
                }
            }
        })
    }
}

/// Asserts a JSON-RPC error: its code, and words of its message.
fn expect_rpc_error(body: &Value, code: i64, words: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{body}");
}

/// The `nextPageToken` of a `ListTasks` answer.
fn next_page_token(body: &Value) -> String {
    body["result"]["nextPageToken"]
        .as_str()
        .unwrap()
        .to_string()
}

fn states(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| {
            event
                .get("task")
                .or_else(|| event.get("statusUpdate"))
                .map(|value| value["status"]["state"].as_str().unwrap().to_string())
        })
        .collect()
}

fn kinds(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event.as_object().unwrap().keys().next().unwrap().clone())
        .collect()
}

fn last_state(events: &Value) -> String {
    states(events).pop().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_a2a_client_discovers_the_team_hands_it_work_and_answers_its_questions() {
    let test_name = "a2a::an_a2a_client_discovers_the_team_hands_it_work_and_answers_its_questions";
    let Some(python) = sdk_or_skip(test_name).await else {
        return;
    };
    for db in TestDb::all(test_name).await {
        let hub = A2aHub::start(db).await;
        let agent = hub.play_agent().await;
        let key = hub.team.key.clone();

        // Discovery: the public card names the JSON-RPC endpoint and the published
        // skill only; the extended card (authenticated) tags it with its presence.
        let found = client(&python, "discover", &hub.base, &key, &[]).await;
        let card = &found["card"];
        assert_eq!(card["name"], "acme");
        assert_eq!(card["supportedInterfaces"][0]["url"], hub.base.as_str());
        assert_eq!(card["supportedInterfaces"][0]["protocolBinding"], "JSONRPC");
        assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "1.0");
        assert_eq!(card["capabilities"]["streaming"], true);
        assert_eq!(card["capabilities"]["pushNotifications"], true);
        assert_eq!(
            card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"],
            "Bearer"
        );
        let skills: Vec<&str> = card["skills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|skill| skill["id"].as_str().unwrap())
            .collect();
        assert_eq!(skills, ["spare"]);
        assert_eq!(
            card["skills"][0]["description"],
            "Writes and reviews release notes."
        );
        assert_eq!(found["extended"]["skills"][0]["tags"], json!(["online"]));

        // Send and stream until completion: the agent does the step over the WebSocket.
        let streamed = client(
            &python,
            "stream",
            &hub.base,
            &key,
            &["spare", "Write the release notes for 2.4"],
        )
        .await;
        let events = &streamed["events"];
        assert_eq!(kinds(events)[0], "task", "{events}");
        assert_eq!(last_state(events), "TASK_STATE_COMPLETED", "{events}");
        // The result arrives as an artifact update, or in the first snapshot when the
        // step was done before the stream began.
        assert!(
            kinds(events).contains(&"artifactUpdate".to_string())
                || events[0]["task"]["artifacts"]
                    .as_array()
                    .is_some_and(|artifacts| !artifacts.is_empty()),
            "{events}"
        );
        let task = &streamed["task"];
        assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
        let artifact = &task["artifacts"][0];
        assert_eq!(artifact["name"], "Write the release notes for 2.4");
        assert_eq!(artifact["parts"][0]["text"], "done");
        assert_eq!(
            artifact["parts"][1]["data"]["text"],
            "done: Write the release notes for 2.4"
        );
        assert_eq!(
            task["history"][0]["parts"][0]["text"],
            "Write the release notes for 2.4"
        );
        assert_eq!(streamed["listed"][0], task["id"]);
        // It is a hub task like any other: the REST API shows it done.
        let task_id = task["id"].as_str().unwrap();
        let (status, rest) = hub
            .hub
            .call(Method::GET, &format!("/v1/tasks/{task_id}"), &key, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(rest["status"], "done");

        // A human approval in between: the result waits for aurora (input-required,
        // the result in the status message); a follow-up rejects it with a comment, the
        // agent reworks it, and a second follow-up approves it.
        let approved = client(
            &python,
            "approve",
            &hub.base,
            &key,
            &["spare", "aurora@example.com", "Draft the announcement"],
        )
        .await;
        assert_eq!(
            last_state(&approved["first"]),
            "TASK_STATE_INPUT_REQUIRED",
            "{approved}"
        );
        let waiting = approved["first"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find_map(|event| event.get("statusUpdate").or_else(|| event.get("task")))
            .unwrap();
        let parts = &waiting["status"]["message"]["parts"];
        assert!(
            parts[0]["text"]
                .as_str()
                .unwrap()
                .contains("waits for approval"),
            "{parts}"
        );
        assert_eq!(parts[1]["data"]["kind"], "approval");
        assert_eq!(
            parts[1]["data"]["result"]["text"],
            "done: Draft the announcement"
        );
        assert_eq!(
            last_state(&approved["rejected"]),
            "TASK_STATE_INPUT_REQUIRED",
            "{approved}"
        );
        assert_eq!(
            last_state(&approved["approved"]),
            "TASK_STATE_COMPLETED",
            "{approved}"
        );
        let task = &approved["task"];
        assert_eq!(
            task["artifacts"][0]["parts"][1]["data"]["rework"],
            "Add the date to the title"
        );
        let history: Vec<&str> = task["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["parts"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            history,
            [
                "Draft the announcement",
                "reject: Add the date to the title",
                "approve"
            ]
        );

        // The agent's question: input-required with the question and its options; the
        // follow-up message answers it and the agent finishes with the answer.
        let asked = client(
            &python,
            "question",
            &hub.base,
            &key,
            &["spare", "Convert the question log", "markdown"],
        )
        .await;
        assert_eq!(last_state(&asked["first"]), "TASK_STATE_INPUT_REQUIRED");
        let question = asked["first"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find_map(|event| event.get("statusUpdate").or_else(|| event.get("task")))
            .unwrap();
        assert_eq!(
            question["status"]["message"]["parts"][1]["data"]["options"],
            json!(["markdown", "html"])
        );
        assert_eq!(last_state(&asked["answered"]), "TASK_STATE_COMPLETED");
        assert_eq!(
            asked["task"]["artifacts"][0]["parts"][1]["data"]["format"],
            "markdown"
        );
        let history: Vec<&str> = asked["task"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["role"].as_str().unwrap())
            .collect();
        assert_eq!(history, ["ROLE_USER", "ROLE_AGENT", "ROLE_USER"]);

        // Cancel: a slow step the agent holds; the task is canceled, a second cancel is
        // refused as not cancelable.
        let canceled = client(
            &python,
            "cancel",
            &hub.base,
            &key,
            &["spare", "A slow migration"],
        )
        .await;
        assert_eq!(
            canceled["canceled"]["status"]["state"],
            "TASK_STATE_CANCELED"
        );
        assert_eq!(
            canceled["again"]["type"], "TaskNotCancelableError",
            "{canceled}"
        );

        // ListTasks shows each task as GetTask does: its questions, approvals and
        // history read for the whole page at once come out the same.
        let listed = hub.call("ListTasks", json!({})).await;
        let listed = listed["result"]["tasks"].as_array().unwrap();
        assert_eq!(listed.len(), 4, "{listed:?}");
        for task in listed {
            let got = hub.call("GetTask", json!({"id": task["id"]})).await;
            assert_eq!(got["result"], *task);
        }

        agent.abort();
    }
}

/// What the push receiver got: the token header and the body of each request.
type Pushed = Arc<Mutex<Vec<(Option<String>, Value)>>>;

async fn receive(State(pushed): State<Pushed>, headers: HeaderMap, body: Bytes) -> &'static str {
    let token = headers
        .get("x-a2a-notification-token")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    pushed.lock().unwrap().push((token, body));
    "ok"
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_notification_reaches_a_local_receiver_with_its_token() {
    let test_name = "a2a::a_push_notification_reaches_a_local_receiver_with_its_token";
    let Some(python) = sdk_or_skip(test_name).await else {
        return;
    };
    for db in TestDb::all(test_name).await {
        let hub = A2aHub::start(db).await;
        let pushed: Pushed = Arc::default();
        let app = axum::Router::new()
            .route("/push", post(receive))
            .with_state(Arc::clone(&pushed));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/push", listener.local_addr().unwrap());
        let receiver = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });

        // The agent is not connected yet: the task stays submitted while the config is
        // created, so no change is missed.
        let created = client(
            &python,
            "push",
            &hub.base,
            &hub.team.key,
            &["spare", "Tag the release", &url, "secret-token-1"],
        )
        .await;
        assert_eq!(created["config"]["url"], url.as_str());
        assert_eq!(created["config"]["token"], "secret-token-1");
        assert_eq!(
            created["listed"]["configs"][0]["id"],
            created["config"]["id"]
        );
        let agent = hub.play_agent().await;

        let deadline = Instant::now() + WAIT;
        loop {
            let completed = pushed
                .lock()
                .unwrap()
                .iter()
                .any(|(_, body)| body["task"]["status"]["state"] == "TASK_STATE_COMPLETED");
            if completed {
                break;
            }
            assert!(Instant::now() < deadline, "no push of the completed task");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pushed = pushed.lock().unwrap().clone();
        for (token, body) in &pushed {
            assert_eq!(token.as_deref(), Some("secret-token-1"));
            assert_eq!(body["task"]["id"], created["task_id"]);
        }
        agent.abort();
        receiver.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_tasks_pages_through_the_workspace_newest_first() {
    let test_name = "a2a::list_tasks_pages_through_the_workspace_newest_first";
    for db in TestDb::all(test_name).await {
        let hub = A2aHub::start(db).await;
        let key = hub.team.key.clone();
        for n in 0..5 {
            hub.create_task(&key, &format!("Work {n}")).await;
        }
        let ids = |body: &Value| -> Vec<String> {
            body["result"]["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|task| task["id"].as_str().unwrap().to_string())
                .collect()
        };
        let first = hub.call("ListTasks", json!({"pageSize": 2})).await;
        assert_eq!(ids(&first).len(), 2, "{first}");
        assert_eq!(first["result"]["totalSize"], 5, "{first}");
        let token = next_page_token(&first);
        assert!(!token.is_empty(), "{first}");

        // A task created meanwhile does not shift the pages that follow.
        hub.create_task(&key, "Work late").await;
        let second = hub
            .call("ListTasks", json!({"pageSize": 2, "pageToken": token}))
            .await;
        assert_eq!(ids(&second).len(), 2, "{second}");
        assert_eq!(second["result"]["totalSize"], 6, "{second}");
        let token = next_page_token(&second);
        let third = hub
            .call("ListTasks", json!({"pageSize": 2, "pageToken": token}))
            .await;
        assert_eq!(ids(&third).len(), 1, "{third}");
        assert_eq!(
            third["result"]["nextPageToken"], "",
            "the last page: {third}"
        );
        let mut paged: Vec<String> = [&first, &second, &third]
            .into_iter()
            .flat_map(ids)
            .collect();
        let newest = hub.call("ListTasks", json!({"pageSize": 1})).await;
        let newest = ids(&newest);
        assert!(
            !paged.contains(&newest[0]),
            "the late task is not paged: {paged:?}"
        );
        paged.sort();
        paged.dedup();
        assert_eq!(paged.len(), 5, "each task once: {paged:?}");

        // A state filter pages the same way; every one of these tasks waits for its agent.
        let submitted = hub
            .call(
                "ListTasks",
                json!({"pageSize": 4, "status": "TASK_STATE_SUBMITTED"}),
            )
            .await;
        assert_eq!(ids(&submitted).len(), 4, "{submitted}");
        let token = next_page_token(&submitted);
        let rest = hub
            .call(
                "ListTasks",
                json!({"pageSize": 4, "status": "TASK_STATE_SUBMITTED", "pageToken": token}),
            )
            .await;
        assert_eq!(ids(&rest).len(), 2, "{rest}");
        assert_eq!(rest["result"]["totalSize"], 6, "{rest}");
        let none = hub
            .call("ListTasks", json!({"status": "TASK_STATE_COMPLETED"}))
            .await;
        assert_eq!(ids(&none).len(), 0, "{none}");
        assert_eq!(none["result"]["nextPageToken"], "", "{none}");

        // A token this server did not give is refused, naming the parameter.
        let body = hub.call("ListTasks", json!({"pageToken": "page-2"})).await;
        expect_rpc_error(&body, -32602, "page token");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_a2a_requests_get_clear_errors() {
    let test_name = "a2a::bad_a2a_requests_get_clear_errors";
    for db in TestDb::all(test_name).await {
        let hub = A2aHub::start(db).await;
        let key = hub.team.key.clone();
        let http = &hub.hub.http;

        // An unknown workspace has no card and no endpoint.
        let resp = http
            .get(format!(
                "{}/a2a/nowhere/.well-known/agent-card.json",
                hub.hub.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let resp = hub
            .raw_rpc(&format!("{}/a2a/nowhere", hub.hub.base), Some("1.0"))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body: Value = resp.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("workspace"), "{body}");

        // Not JSON, not JSON-RPC, an unknown method: JSON-RPC errors with HTTP 200.
        let resp = hub
            .raw_rpc(&hub.base, Some("1.0"))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32700);
        let resp = hub
            .raw_rpc(&hub.base, Some("1.0"))
            .json(&json!({"jsonrpc": "1.0", "id": 2, "method": "GetTask"}))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32600, "{body}");
        assert_eq!(body["id"], 2);
        let body = hub.call("message/send", json!({})).await;
        expect_rpc_error(&body, -32601, "SendMessage");

        // A missing or other version: -32009, naming the version to send.
        for version in [None, Some("0.3")] {
            let req = hub
                .raw_rpc(&hub.base, version)
                .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "ListTasks", "params": {}}));
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            expect_rpc_error(&body, -32009, "A2A-Version: 1.0");
        }

        // No token, an unknown token: 401; another workspace's token: 403.
        let (status, body) = hub.rpc(None, "ListTasks", json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Authorization")
        );
        let (status, _) = hub.rpc(Some("ahk_unknown"), "ListTasks", json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let other = team_named(&hub.hub.ctx, "globex").await;
        let (status, body) = hub.rpc(Some(&other.key), "ListTasks", json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("another workspace")
        );

        // Another workspace's task is not found here.
        let globex_task_id = hub.create_task(&other.key, "Globex work").await;
        let body = hub.call("GetTask", json!({"id": globex_task_id})).await;
        assert_eq!(body["error"]["code"], -32001, "{body}");

        // An agent that is not published, a message without text, params of a wrong shape.
        let message = |metadata: Value, parts: Value| {
            json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": parts,
                "metadata": metadata}})
        };
        let body = hub
            .call(
                "SendMessage",
                message(json!({"agent": "min-laptop"}), json!([{"text": "Do it"}])),
            )
            .await;
        assert_eq!(body["error"]["code"], -32602, "{body}");
        let text = body["error"]["message"].as_str().unwrap();
        assert!(
            text.contains("min-laptop") && text.contains("`spare`"),
            "{text}"
        );
        let body = hub
            .call(
                "SendMessage",
                message(json!({"agent": "spare"}), json!([{"data": {"x": 1}}])),
            )
            .await;
        expect_rpc_error(&body, -32602, "no text part");
        let body = hub.call("GetTask", json!({"task": 1})).await;
        assert_eq!(body["error"]["code"], -32602, "{body}");

        // A follow-up on a task that waits for nobody is refused; nothing changes.
        let sent = hub
            .call(
                "SendMessage",
                json!({"message": {"messageId": "m2", "role": "ROLE_USER",
                    "parts": [{"text": "Sort the backlog"}], "metadata": {"agent": "spare"}},
                    "configuration": {"returnImmediately": true}}),
            )
            .await;
        let task_id = sent["result"]["task"]["id"].as_str().unwrap().to_string();
        assert_eq!(
            sent["result"]["task"]["status"]["state"], "TASK_STATE_SUBMITTED",
            "{sent}"
        );
        let body = hub
            .call(
                "SendMessage",
                json!({"message": {"messageId": "m3", "role": "ROLE_USER", "taskId": task_id,
                    "parts": [{"text": "approve"}]}}),
            )
            .await;
        expect_rpc_error(&body, -32602, "TASK_STATE_SUBMITTED");

        // Cancelled over JSON-RPC, the task is over: a subscription is refused, naming
        // its state, and GetTask with historyLength keeps the last messages only.
        let body = hub.call("CancelTask", json!({"id": task_id})).await;
        assert_eq!(
            body["result"]["status"]["state"], "TASK_STATE_CANCELED",
            "{body}"
        );
        let body = hub.call("SubscribeToTask", json!({"id": task_id})).await;
        expect_rpc_error(&body, -32602, "TASK_STATE_CANCELED");
        let body = hub
            .call("GetTask", json!({"id": task_id, "historyLength": 0}))
            .await;
        assert_eq!(body["result"]["history"], json!([]), "{body}");

        // Publishing: only the agent's member or an owner or admin; min may not publish
        // aurora's agent.
        let (status, _) = hub
            .hub
            .call(
                Method::PUT,
                "/v1/agents/spare/a2a",
                &hub.team.min_key,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = hub
            .hub
            .call(Method::DELETE, "/v1/agents/spare/a2a", &key, None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let card: Value = http
            .get(format!("{}/.well-known/agent-card.json", hub.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(card["skills"], json!([]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_reports_the_hubs_errors() {
    let test_name = "a2a::the_sdk_reports_the_hubs_errors";
    let Some(python) = sdk_or_skip(test_name).await else {
        return;
    };
    let Some(db) = TestDb::all(test_name).await.into_iter().next() else {
        return;
    };
    let hub = A2aHub::start(db).await;
    let errors = client(
        &python,
        "errors",
        &hub.base,
        &hub.team.key,
        &["0190f5d2-0000-7000-8000-000000000000"],
    )
    .await;
    assert_eq!(
        errors["unknown_agent"]["type"], "InvalidParamsError",
        "{errors}"
    );
    assert!(
        errors["unknown_agent"]["message"]
            .as_str()
            .unwrap()
            .contains("no skill `nobody`"),
        "{errors}"
    );
    assert_eq!(
        errors["unknown_task"]["type"], "TaskNotFoundError",
        "{errors}"
    );
    assert!(
        errors["bad_token"]["message"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{errors}"
    );
}
