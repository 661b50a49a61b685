//! Steps delegated to an outside A2A agent (`"executor": "a2a"`), against an agent built
//! with the official Python SDK (hub/tests/a2a/server.py) on 127.0.0.1, and a real hub
//! with its A2A worker on both backends: a result submitted and approved, the remote's
//! question answered by the step's human through the API (or withdrawn when the remote
//! completes without the answer), a remote failure retried and
//! then failing the step, a cancelled task cancelling the remote task (after another
//! hub process took the call over from one that stopped); and the bad inputs (no or a
//! bad card URL at create, an unreachable card, a card that is not one, an agent's
//! claim).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use agenthub::a2a::client::A2aClientSettings;
use agenthub::a2a::delegate::run_worker;
use agenthub::ctx::Settings;
use agenthub::tasks;

use crate::a2a::sdk_or_skip;
use crate::gateway::{Hub, Team, team};
use crate::support::TestDb;

const WAIT: Duration = Duration::from_secs(30);

/// The outside agent: hub/tests/a2a/server.py on a free port, stopped on drop.
struct Remote {
    base: String,
    _child: tokio::process::Child,
}

impl Remote {
    async fn start(python: &Path) -> Remote {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/a2a/server.py");
        let mut child = tokio::process::Command::new(python)
            .arg(&script)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the A2A server did not start in 30 s")
            .unwrap()
            .expect("the A2A server printed nothing");
        let port = serde_json::from_str::<Value>(&first).unwrap()["port"]
            .as_u64()
            .unwrap();
        Remote {
            base: format!("http://127.0.0.1:{port}"),
            _child: child,
        }
    }

    fn card_url(&self) -> String {
        format!("{}/.well-known/agent-card.json", self.base)
    }

    /// What the remote saw: its messages and cancels.
    async fn log(&self) -> Vec<Value> {
        reqwest::get(format!("{}/log", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A hub with its A2A worker polling often, calls to 127.0.0.1 allowed.
struct DelegatingHub {
    hub: Hub,
    team: Team,
    stop: CancellationToken,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for DelegatingHub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl DelegatingHub {
    async fn start(db: TestDb) -> DelegatingHub {
        let settings = Settings {
            a2a: A2aClientSettings {
                allow_private: true,
                poll_ms: 50,
                max_poll_ms: 200,
                timeout_ms: 3_000,
                max_errors: 5,
            },
            // Shorter than the time a dead hub's calls wait for another hub.
            lease_ms: 1_000,
            ..Settings::default()
        };
        let hub = Hub::start(db, settings).await;
        let stop = CancellationToken::new();
        let worker = Some(tokio::spawn(run_worker(hub.ctx.clone(), stop.clone())));
        let team = team(&hub.ctx).await;
        DelegatingHub {
            hub,
            team,
            stop,
            worker,
        }
    }

    /// Stops the A2A worker (as a hub shutting down does) and starts another, as the
    /// next hub process.
    async fn restart_worker(&mut self) {
        self.stop.cancel();
        if let Some(worker) = self.worker.take() {
            tokio::time::timeout(WAIT, worker)
                .await
                .expect("the A2A worker did not stop")
                .unwrap();
        }
        self.stop = CancellationToken::new();
        self.worker = Some(tokio::spawn(run_worker(
            self.hub.ctx.clone(),
            self.stop.clone(),
        )));
    }

    /// Kills the A2A worker (as a hub process that dies: it gives nothing up) and starts
    /// another, as the next hub process.
    async fn crash_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.abort();
            assert!(worker.await.unwrap_err().is_cancelled());
        }
        self.stop = CancellationToken::new();
        self.worker = Some(tokio::spawn(run_worker(
            self.hub.ctx.clone(),
            self.stop.clone(),
        )));
    }

    /// Creates a one-step task delegated to the agent at `card_url`; the task's and the
    /// step's ids.
    async fn delegate(&self, title: &str, input: Value, extra: Value) -> (String, String) {
        let mut step = json!({"key": "only", "title": title, "assignees": ["spare"],
            "executor": "a2a", "input": input});
        for (name, value) in extra.as_object().unwrap() {
            step[name] = value.clone();
        }
        let (task_id, steps) = self
            .hub
            .create_task_ids(&self.team.key, json!({"title": title, "steps": [step]}))
            .await;
        (task_id, steps[0].1.clone())
    }

    /// A one-step task with `step` is refused at create, naming `field`, with `words` in
    /// its message.
    async fn expect_refused(&self, step: Value, field: &str, words: &str) {
        let (status, err) = self
            .hub
            .call(
                Method::POST,
                "/v1/tasks",
                &self.team.key,
                Some(json!({"title": "Bad", "steps": [step]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{step}: {err}");
        assert_eq!(err["error"]["field"], field, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{err}");
    }

    /// The task's timeline, as one text.
    async fn timeline(&self, task_id: &str) -> String {
        let path = format!("/v1/tasks/{task_id}/timeline");
        let (status, timeline) = self
            .hub
            .call(Method::GET, &path, &self.team.key, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{timeline}");
        timeline.to_string()
    }

    /// The question about `step_id` in the inbox of aurora (the member of `spare`, the
    /// steps' assignee), if there is one.
    async fn question_in_inbox(&self, step_id: &str) -> Option<Value> {
        let (status, inbox) = self
            .hub
            .call(Method::GET, "/v1/me/inbox", &self.team.key, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{inbox}");
        inbox["questions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|question| question["step_id"] == step_id)
            .cloned()
    }

    /// Answers a question as aurora.
    async fn answer(&self, question: &Value, answer: &str) -> (StatusCode, Value) {
        let question_id = question["id"].as_str().unwrap();
        self.hub
            .call(
                Method::POST,
                &format!("/v1/input-requests/{question_id}/answer"),
                &self.team.key,
                Some(json!({"answer": answer})),
            )
            .await
    }

    /// The step once `done(step)` holds.
    async fn step_until(&self, step_id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let step = self.hub.step(&self.team.key, step_id).await;
            if done(&step) {
                return step;
            }
            assert!(
                Instant::now() < deadline,
                "the step did not get there: {step}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn until_logged(remote: &Remote, found: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = remote.log().await;
        if found(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the remote never saw it: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_delegated_to_an_outside_a2a_agent_completes_asks_fails_and_is_cancelled() {
    let test_name = "a2a_delegate::a_step_delegated_to_an_outside_a2a_agent_completes_asks_fails_and_is_cancelled";
    let Some(python) = sdk_or_skip(test_name).await else {
        return;
    };
    for db in TestDb::all(test_name).await {
        let remote = Remote::start(&python).await;
        let mut hub = DelegatingHub::start(db).await;
        let card = remote.card_url();

        // Completes: the artifact's text is the step's result, then aurora approves it.
        let (_, notes) = hub
            .delegate(
                "Write the release notes",
                json!({"agent_card_url": card, "text": "Version 2.4 adds dark mode."}),
                json!({"approval_level": 1, "approvers": ["aurora@example.com"]}),
            )
            .await;
        // Asks: the question reaches aurora (spare's member) in her inbox.
        let (_, asking) = hub
            .delegate(
                "Convert the question log",
                json!({"agent_card_url": card}),
                json!({}),
            )
            .await;
        // Fails, twice: the remote's reason, retried per max_attempts.
        let (_, failing) = hub
            .delegate(
                "Print the fail report",
                json!({"agent_card_url": card}),
                json!({"max_attempts": 2}),
            )
            .await;
        // Slow: cancelled while the remote works.
        let (slow_task, slow) = hub
            .delegate(
                "Run the slow migration",
                json!({"agent_card_url": card}),
                json!({}),
            )
            .await;

        let step = hub
            .step_until(&notes, |step| step["status"] == "awaiting_approval")
            .await;
        assert_eq!(
            step["result"]["text"],
            "Release notes for: Write the release notes\n\nVersion 2.4 adds dark mode."
        );
        assert_eq!(step["summary"], "Written.");
        assert_eq!(step["result"]["agent_card_url"], card.as_str());
        // Claimed on behalf of its assignee.
        assert_eq!(step["claimed_by"], step["assignees"][0]["id"], "{step}");
        let (status, approved) = hub
            .hub
            .call(
                Method::POST,
                &format!("/v1/steps/{notes}/approve"),
                &hub.team.key,
                Some(json!({"attempt": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{approved}");
        hub.step_until(&notes, |step| step["status"] == "done")
            .await;

        hub.step_until(&asking, |step| step["status"] == "blocked")
            .await;
        let question = hub
            .question_in_inbox(&asking)
            .await
            .expect("the question is in aurora's inbox");
        assert_eq!(question["question"], "Which format, markdown or html?");
        let (status, answered) = hub.answer(&question, "html").await;
        assert_eq!(status, StatusCode::OK, "{answered}");
        let step = hub
            .step_until(&asking, |step| step["status"] == "done")
            .await;
        assert_eq!(step["result"]["text"], "Formatted as html.");

        let step = hub
            .step_until(&failing, |step| step["status"] == "failed")
            .await;
        let reason = step["status_reason"].as_str().unwrap();
        assert!(reason.contains("the printer is on fire"), "{reason}");
        assert!(reason.contains("on attempt 2 of 2"), "{reason}");
        assert_eq!(step["attempt"], 2);

        // The remote works on the slow step; cancelling the task reaches it.
        hub.step_until(&slow, |step| step["status"] == "running")
            .await;
        let log = until_logged(&remote, |log| {
            log.iter().any(|entry| {
                entry["kind"] == "message"
                    && entry["text"]
                        .as_str()
                        .is_some_and(|text| text.starts_with("Run the slow migration"))
            })
        })
        .await;
        let slow_remote_id = log
            .iter()
            .find(|entry| {
                entry["text"]
                    .as_str()
                    .is_some_and(|text| text.starts_with("Run the slow migration"))
            })
            .unwrap()["taskId"]
            .clone();
        // The hub stops; the next one goes on following the same remote task (it sends
        // nothing again).
        hub.restart_worker().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The hub dies; the step's lease outlasts its hold on the call, so no sweep
        // starts another attempt, and the next hub takes the call over once the hold
        // has run out (it sends nothing again either).
        hub.crash_worker().await;
        let hold = hub.hub.ctx.settings.a2a.hold_ms();
        tokio::time::sleep(Duration::from_millis(hub.hub.ctx.settings.lease_ms + 500)).await;
        assert_eq!(tasks::sweep_expired_leases(&hub.hub.ctx).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(hold + 1_000)).await;
        let step = hub.hub.step(&hub.team.key, &slow).await;
        assert_eq!(
            (step["status"].as_str(), step["attempt"].as_u64()),
            (Some("running"), Some(1)),
            "{step}"
        );
        let (status, cancelled) = hub
            .hub
            .call(
                Method::PATCH,
                &format!("/v1/tasks/{slow_task}"),
                &hub.team.key,
                Some(json!({"action": "cancel"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{cancelled}");
        let log = until_logged(&remote, |log| {
            log.iter()
                .any(|entry| entry["kind"] == "cancel" && entry["taskId"] == slow_remote_id)
        })
        .await;
        // What the remote was sent: each step once per attempt, the answer as a
        // follow-up on the question's task.
        let texts: Vec<&str> = log
            .iter()
            .filter(|entry| entry["kind"] == "message")
            .map(|entry| entry["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            texts
                .iter()
                .filter(|text| text.starts_with("Print the fail report"))
                .count(),
            2,
            "{texts:?}"
        );
        assert!(texts.contains(&"html"), "{texts:?}");
        assert_eq!(
            texts
                .iter()
                .filter(|text| text.starts_with("Run the slow migration"))
                .count(),
            1,
            "{texts:?}"
        );
        let step = hub.hub.step(&hub.team.key, &slow).await;
        assert_eq!(step["status"], "cancelled");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_that_completes_without_the_answer_withdraws_its_question() {
    let test_name =
        "a2a_delegate::a_remote_that_completes_without_the_answer_withdraws_its_question";
    let Some(python) = sdk_or_skip(test_name).await else {
        return;
    };
    for db in TestDb::all(test_name).await {
        let remote = Remote::start(&python).await;
        let hub = DelegatingHub::start(db).await;
        let (task_id, step_id) = hub
            .delegate(
                "Convert the impatient log",
                json!({"agent_card_url": remote.card_url()}),
                json!({}),
            )
            .await;
        hub.step_until(&step_id, |step| step["status"] == "blocked")
            .await;
        let question = hub
            .question_in_inbox(&step_id)
            .await
            .expect("the question is in aurora's inbox");
        assert_eq!(question["question"], "Which format, markdown or html?");

        // The remote completes while nobody has answered: the result is the step's, and
        // the question is no longer open.
        reqwest::get(format!("{}/go", remote.base)).await.unwrap();
        let step = hub
            .step_until(&step_id, |step| step["status"] == "done")
            .await;
        assert_eq!(step["result"]["text"], "Formatted as markdown.");
        assert_eq!(hub.question_in_inbox(&step_id).await, None);
        let (status, refused) = hub.answer(&question, "html").await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        let timeline = hub.timeline(&task_id).await;
        assert!(
            timeline.contains("the A2A agent went on without an answer"),
            "{timeline}"
        );
        // The remote was sent the step once and no answer.
        let log = remote.log().await;
        let messages: Vec<&Value> = log
            .iter()
            .filter(|entry| entry["kind"] == "message")
            .collect();
        assert_eq!(messages.len(), 1, "{log:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_agent_card_url_is_refused_or_fails_the_step_with_the_reason() {
    let test_name =
        "a2a_delegate::a_bad_agent_card_url_is_refused_or_fails_the_step_with_the_reason";
    let Some(python) = sdk_or_skip(test_name).await else {
        return;
    };
    for db in TestDb::all(test_name).await {
        let remote = Remote::start(&python).await;
        let hub = DelegatingHub::start(db).await;

        // At create: an a2a step needs an absolute http(s) card URL.
        for input in [
            json!({}),
            json!({"agent_card_url": 7}),
            json!({"agent_card_url": "/.well-known/agent-card.json"}),
            json!({"agent_card_url": "ftp://agents.example.com/card.json"}),
        ] {
            let step = json!({"key": "only", "title": "Bad", "assignees": ["spare"],
                "executor": "a2a", "input": input});
            hub.expect_refused(step, "steps.input.agent_card_url", "agent_card_url")
                .await;
        }
        // Only members as assignees: no agent for the hub to run it for.
        let step = json!({"key": "only", "title": "Bad",
            "assignees": ["member:aurora@example.com"], "executor": "a2a",
            "input": {"agent_card_url": remote.card_url()}});
        hub.expect_refused(step, "steps.assignees", "name an agent")
            .await;
        let (_, tasks) = hub
            .hub
            .call(Method::GET, "/v1/tasks", &hub.team.key, None)
            .await;
        assert_eq!(tasks["meta"]["count"], 0, "nothing was created: {tasks}");

        // At run time: nothing listening, a 404, JSON that is no card. Each attempt
        // fails with the reason, and the step fails after its last.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let cases = [
            (
                format!("http://127.0.0.1:{closed}/.well-known/agent-card.json"),
                "cannot fetch the Agent Card at",
            ),
            (format!("{}/nowhere", remote.base), "answered HTTP 404"),
            (
                format!("{}/log", remote.base),
                "names no JSON-RPC interface",
            ),
        ];
        let mut steps = Vec::new();
        for (card_url, _) in &cases {
            let (_, step_id) = hub
                .delegate(
                    "Write the notes",
                    json!({"agent_card_url": card_url}),
                    json!({"max_attempts": 2}),
                )
                .await;
            steps.push(step_id);
        }
        for ((card_url, words), step_id) in cases.iter().zip(&steps) {
            let step = hub
                .step_until(step_id, |step| step["status"] == "failed")
                .await;
            let reason = step["status_reason"].as_str().unwrap();
            assert!(reason.contains(words), "{reason}");
            assert!(reason.contains(card_url.as_str()), "{reason}");
            assert!(reason.contains("on attempt 2 of 2"), "{reason}");
        }
        // The remote never got a message.
        assert_eq!(remote.log().await, Vec::<Value>::new());

        // Agents do not claim an a2a step: the hub runs it.
        let (_, step_id) = hub
            .delegate(
                "Write the notes",
                json!({"agent_card_url": format!("http://127.0.0.1:{closed}/card")}),
                json!({}),
            )
            .await;
        let mut agent = crate::gateway::Agent::connect(
            &hub.hub,
            &hub.team.spare,
            agenthub_protocol::Codec::Json,
            0,
        )
        .await;
        let reply = agent.claim(&step_id).await;
        crate::gateway::expect_error(&reply, "conflict", "not claimed");
    }
}
