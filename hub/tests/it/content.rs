//! What the hub accepts and what its events carry, against a real hub on both backends:
//! a huge task creates small events, fan-out and workflow changes are bounded, deep or
//! large values are refused before they could reach an agent, NUL characters are refused
//! or replaced the same way on SQLite and PostgreSQL, upload names are sanitised and
//! downloads name them safely, and left-over uploads are cleaned at start-up.

use std::time::{Duration, SystemTime};

use agenthub_protocol::{
    ClientFrame, Codec, InputAnswer, Limits, LogStream, ServerFrame, StepBlock, StepFail, StepLog,
    StepSubmit,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use agenthub::agents::{self, NewAgent};
use agenthub::ctx::Settings;
use agenthub::events;
use agenthub::files;

use crate::gateway::{Agent, Hub, Team, expect_error, expect_ok, team};

/// Every event stored for `audience_id`, checked to decode in both codecs within the
/// protocol's default limits (1 MiB, 64 levels) as any client decodes them; returns
/// each event with its JSON size.
async fn decodable_events(hub: &Hub, audience_id: &str) -> Vec<(ServerFrame, usize)> {
    let rows = events::list_after(&hub.ctx.store, audience_id, 0, 100_000)
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let frame: ServerFrame = serde_json::from_str(&row.payload).unwrap();
            for codec in [Codec::Json, Codec::MsgPack] {
                let bytes = codec.encode(&frame).unwrap();
                let decoded = codec
                    .decode_server(&bytes, &Limits::default())
                    .unwrap_or_else(|err| panic!("{} does not decode: {err}", row.event_type));
                assert_eq!(decoded, frame);
            }
            (frame, row.payload.len())
        })
        .collect()
}

/// The agent id of an agent token.
async fn agent_id(hub: &Hub, token: &str) -> String {
    agents::authenticate_token(&hub.ctx.store, token)
        .await
        .unwrap()
        .agent_id
}

async fn count_tasks(hub: &Hub, key: &str) -> usize {
    let (status, body) = hub.call(Method::GET, "/v1/tasks", key, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["tasks"].as_array().unwrap().len()
}

// ---------------------------------------------------------------- fan-out

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_task_is_created_with_small_events() {
    for hub in Hub::all(module_path!(), Settings::default()).await {
        let team = team(&hub.ctx).await;
        // A description of 980,000 bytes and 500 steps for 3 agents: one 1 MiB request.
        let description = "Read the whole report. ".repeat(980_000 / 23);
        let steps: Vec<Value> = (0..500)
            .map(|idx| {
                json!({"key": format!("s{idx}"), "title": format!("Part {idx}"),
                       "assignees": ["min-laptop", "duan-desktop", "spare"]})
            })
            .collect();
        let body = json!({"title": "Huge", "description": description, "steps": steps});
        assert!(serde_json::to_vec(&body).unwrap().len() > 1_000_000);
        let (status, task) = hub
            .call(Method::POST, "/v1/tasks", &team.key, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let task_id = task["id"].as_str().unwrap().to_string();

        for token in [&team.min, &team.duan, &team.spare] {
            let events = decodable_events(&hub, &agent_id(&hub, token).await).await;
            // task.created and one step.ready per step, none of them carrying the text.
            assert_eq!(events.len(), 501);
            let total: usize = events.iter().map(|(_, size)| size).sum();
            assert!(total < 4 * 1024 * 1024, "{total} bytes for one agent");
            for (frame, size) in &events {
                assert!(*size < 8 * 1024, "a {} of {size} bytes", frame.type_name());
                match frame {
                    ServerFrame::StepReady(ready) => {
                        assert!(ready.step.task_description_truncated);
                        assert_eq!(ready.step.task_description.len(), 4096);
                        assert!(description.starts_with(&ready.step.task_description));
                    }
                    ServerFrame::TaskCreated(created) => {
                        assert!(created.task.description_truncated);
                        assert_eq!(created.task.description.len(), 4096);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        // The whole text is one row, which an agent fetches on demand.
        let (status, fetched) = hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}"),
                &team.min,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{fetched}");
        assert_eq!(fetched["description"].as_str().unwrap(), description);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_would_fan_out_too_far_is_refused_whole() {
    for hub in Hub::all(module_path!(), Settings::default()).await {
        let team = team(&hub.ctx).await;
        let workspace_id = agents::authenticate_token(&hub.ctx.store, &team.min)
            .await
            .unwrap()
            .workspace_id;
        let mut names = Vec::new();
        for idx in 0..20 {
            let name = format!("bot{idx}");
            agents::create_agent(
                &hub.ctx.store,
                NewAgent {
                    workspace_id: &workspace_id,
                    name: &name,
                    owner: "aurora@example.com",
                    capabilities: &[],
                    max_concurrency: 1,
                },
            )
            .await
            .unwrap();
            names.push(name);
        }
        // 500 steps × 20 assignees × a 4 KiB excerpt each: about 45 MB of events.
        let steps: Vec<Value> = (0..500)
            .map(|idx| json!({"key": format!("s{idx}"), "title": "Part", "assignees": names}))
            .collect();
        let body = json!({"title": "Wide", "description": "x".repeat(8192), "steps": steps});
        let (status, err) = hub
            .call(Method::POST, "/v1/tasks", &team.key, Some(body))
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
        assert_eq!(err["error"]["code"], "too_large");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("bytes of events"),
            "{err}"
        );
        // Nothing of it was kept, and nobody heard of it.
        assert_eq!(count_tasks(&hub, &team.key).await, 0);
        assert!(
            decodable_events(&hub, &agent_id(&hub, &team.min).await)
                .await
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_changes_obey_the_step_limit_of_creation() {
    for hub in Hub::all(module_path!(), Settings::default()).await {
        let team = team(&hub.ctx).await;
        let steps: Vec<Value> = (0..450)
            .map(|idx| json!({"key": format!("s{idx}"), "title": "Part", "assignees": ["spare"]}))
            .collect();
        let (status, task) = hub
            .call(
                Method::POST,
                "/v1/tasks",
                &team.key,
                Some(json!({"title": "Big", "steps": steps})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let task_id = task["id"].as_str().unwrap();
        let add = |count: usize| -> Value {
            let operations: Vec<Value> = (0..count)
                .map(|idx| {
                    json!({"op": "add_step", "step": {"key": format!("more{idx}"), "title": "More",
                           "assignees": ["spare"]}})
                })
                .collect();
            json!({"reason": "more work", "operations": operations})
        };
        let path = format!("/v1/tasks/{task_id}/workflow");

        let (status, err) = hub
            .call(Method::PATCH, &path, &team.key, Some(add(600)))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], "operations");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 500")
        );

        let (status, err) = hub
            .call(Method::PATCH, &path, &team.key, Some(add(60)))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("510 steps"),
            "{err}"
        );

        let (status, fetched) = hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}"),
                &team.key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            fetched["steps"].as_array().unwrap().len(),
            450,
            "nothing added"
        );

        let (status, changed) = hub
            .call(Method::PATCH, &path, &team.key, Some(add(50)))
            .await;
        assert_eq!(status, StatusCode::OK, "{changed}");
        assert_eq!(changed["steps"].as_array().unwrap().len(), 500);
    }
}

// ---------------------------------------------------------------- depth and size

fn nested(depth: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..depth {
        value = json!([value]);
    }
    value
}

fn submit(
    step_id: &str,
    attempt: u32,
    result: Value,
    summary: &str,
) -> impl FnOnce(u64) -> ClientFrame {
    let step_id = Uuid::parse_str(step_id).unwrap();
    let summary = summary.to_string();
    move |id| {
        ClientFrame::StepSubmit(StepSubmit {
            id,
            step_id,
            attempt,
            result,
            summary: Some(summary),
            self_check: None,
            check: None,
            files: vec![],
            usage: None,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_too_deep_or_large_for_an_event_are_refused() {
    for hub in Hub::all(module_path!(), Settings::default()).await {
        let team = team(&hub.ctx).await;
        // An input nested 100 deep would sit 102 levels deep in `step.ready`.
        let body = json!({"title": "Deep", "steps": [
            {"key": "a", "title": "A", "assignees": ["min-laptop"], "input": nested(100)}]});
        let (status, err) = hub
            .call(Method::POST, "/v1/tasks", &team.key, Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], "steps.input");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("100 levels")
        );
        assert_eq!(count_tasks(&hub, &team.key).await, 0);

        let steps = hub
            .create_task(
                &team.key,
                json!({"title": "Chain", "steps": [
                    {"key": "a", "title": "A", "assignees": ["min-laptop"]},
                    {"key": "b", "title": "B", "assignees": ["duan-desktop"], "depends_on": ["a"]}]}),
            )
            .await;
        let (a, b) = (&steps[0].1, &steps[1].1);
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
        min.ready(a).await;
        let claimed = min.claim(a).await;
        let attempt = expect_ok(&claimed, Some("claimed")).attempt.unwrap();

        // A result nested 62 deep decodes inside `step.submit` (it reaches level 63) but
        // would reach level 66 inside the next `step.ready`: refused, the step stays held.
        let refused = min.request(submit(a, attempt, nested(62), "deep")).await;
        expect_error(&refused, "invalid", "62 levels");
        let big = json!({"text": "x".repeat(600 * 1024)});
        let refused = min.request(submit(a, attempt, big, "big")).await;
        expect_error(&refused, "invalid", "PUT /v1/files");
        assert_eq!(hub.step(&team.key, a).await["status"], "claimed");

        // Within the limits the result reaches the next step, decodable by any client.
        let accepted = min.request(submit(a, attempt, nested(32), "fits")).await;
        expect_ok(&accepted, Some("done"));
        let mut duan = Agent::connect(&hub, &team.duan, Codec::MsgPack, 0).await;
        duan.ready(b).await;
        for (frame, _) in decodable_events(&hub, &agent_id(&hub, &team.duan).await).await {
            if let ServerFrame::StepReady(ready) = frame {
                assert_eq!(ready.step.inputs[0].result, nested(32));
                assert!(!ready.step.inputs[0].truncated);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_dependency_outputs_travel_as_references() {
    for hub in Hub::all(module_path!(), Settings::default()).await {
        let team = team(&hub.ctx).await;
        let steps = hub
            .create_task(
                &team.key,
                json!({"title": "Fan in", "steps": [
                    {"key": "a", "title": "A", "assignees": ["min-laptop"]},
                    {"key": "b", "title": "B", "assignees": ["min-laptop"]},
                    {"key": "c", "title": "C", "assignees": ["duan-desktop"], "depends_on": ["a", "b"]}]}),
            )
            .await;
        let mut min = Agent::connect(&hub, &team.min, Codec::Json, 0).await;
        // Two results of 200 KB: together over what one `step.ready` carries.
        for (key, step_id) in &steps[..2] {
            min.ready(step_id).await;
            let attempt = expect_ok(&min.claim(step_id).await, Some("claimed"))
                .attempt
                .unwrap();
            let result = json!({"text": key.repeat(200 * 1024)});
            let done = min.request(submit(step_id, attempt, result, "long")).await;
            expect_ok(&done, Some("done"));
        }
        let duan_id = agent_id(&hub, &team.duan).await;
        let events = decodable_events(&hub, &duan_id).await;
        let ready = events
            .iter()
            .find_map(|(frame, _)| match frame {
                ServerFrame::StepReady(ready) => Some(ready.clone()),
                _ => None,
            })
            .expect("step.ready of c");
        let inputs = &ready.step.inputs;
        assert_eq!(inputs.len(), 2);
        assert!(!inputs[0].truncated);
        assert_eq!(inputs[0].result["text"].as_str().unwrap().len(), 200 * 1024);
        assert!(inputs[1].truncated);
        assert_eq!(inputs[1].result, Value::Null);
        assert_eq!(inputs[1].summary.as_deref(), Some("long"));
        // The agent fetches what was left out.
        let (status, step) = hub
            .call(
                Method::GET,
                &format!("/v1/steps/{}", inputs[1].step_id),
                &team.duan,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{step}");
        assert_eq!(step["result"]["text"].as_str().unwrap().len(), 200 * 1024);
    }
}

// ---------------------------------------------------------------- NUL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_get_the_same_answer_on_both_backends() {
    for hub in Hub::all(module_path!(), Settings::default()).await {
        let team: Team = team(&hub.ctx).await;
        // Text a person writes, and every name or value of a body: refused, naming it.
        for (body, field) in [
            (
                json!({"title": "a\u{0}b", "steps": [{"key": "a", "title": "A", "assignees": ["spare"]}]}),
                "title",
            ),
            (
                json!({"title": "T", "description": "\u{0}", "steps": [{"key": "a", "title": "A", "assignees": ["spare"]}]}),
                "description",
            ),
            (
                json!({"title": "T", "steps": [{"key": "a", "title": "A", "assignees": ["spare\u{0}"]}]}),
                "steps[0].assignees[0]",
            ),
            (
                json!({"title": "T", "steps": [{"key": "a", "title": "A", "assignees": ["spare"], "input": {"cmd": "\u{0}"}}]}),
                "steps[0].input.cmd",
            ),
        ] {
            let (status, err) = hub
                .call(Method::POST, "/v1/tasks", &team.key, Some(body))
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
            assert_eq!(err["error"]["code"], "invalid");
            assert_eq!(err["error"]["field"], field);
        }
        assert_eq!(count_tasks(&hub, &team.key).await, 0);
        // An id in the URL.
        for path in [
            "/v1/tasks/%00",
            "/v1/steps/a%00b/logs",
            "/v1/tasks?status=%00",
        ] {
            let (status, err) = hub.call(Method::GET, path, &team.key, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
            assert_eq!(err["error"]["code"], "bad_request");
        }

        // A shell step whose output holds NUL still logs, asks, fails and finishes.
        let steps = hub
            .create_task(
                &team.key,
                json!({"title": "Shell", "steps": [
                    {"key": "a", "title": "A", "assignees": ["min-laptop"], "max_attempts": 3}]}),
            )
            .await;
        let a = &steps[0].1;
        let step_uuid = Uuid::parse_str(a).unwrap();
        let mut min = Agent::connect(&hub, &team.min, Codec::MsgPack, 0).await;
        min.ready(a).await;
        let attempt = expect_ok(&min.claim(a).await, Some("claimed"))
            .attempt
            .unwrap();
        let logged = min
            .request(|id| {
                ClientFrame::StepLog(StepLog {
                    id,
                    step_id: step_uuid,
                    attempt,
                    stream: LogStream::Stdout,
                    text: "out\u{0}put".into(),
                })
            })
            .await;
        expect_ok(&logged, None);
        let (status, logs) = hub
            .call(Method::GET, &format!("/v1/steps/{a}/logs"), &team.key, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{logs}");
        assert_eq!(logs["logs"][0]["text"], "out\u{FFFD}put");

        let blocked = min
            .request(|id| {
                ClientFrame::StepBlock(StepBlock {
                    id,
                    step_id: step_uuid,
                    attempt,
                    question: "which\u{0}one?".into(),
                    options: vec!["a\u{0}".into()],
                })
            })
            .await;
        let request_id = expect_ok(&blocked, Some("blocked")).created_id.unwrap();
        // An answer is a person's text: refused over REST and over the protocol.
        let (status, err) = hub
            .call(
                Method::POST,
                &format!("/v1/input-requests/{request_id}/answer"),
                &team.min_key,
                Some(json!({"answer": "x\u{0}"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], "answer");
        let refused = min
            .request(|id| {
                ClientFrame::InputAnswer(InputAnswer {
                    id,
                    input_request_id: request_id,
                    answer: "x\u{0}".into(),
                })
            })
            .await;
        expect_error(&refused, "invalid", "NUL");
        let (status, answered) = hub
            .call(
                Method::POST,
                &format!("/v1/input-requests/{request_id}/answer"),
                &team.min_key,
                Some(json!({"answer": "the first"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answered}");
        assert_eq!(answered["question"], "which\u{FFFD}one?");

        let failed = min
            .request(|id| {
                ClientFrame::StepFail(StepFail {
                    id,
                    step_id: step_uuid,
                    attempt,
                    reason: "exit\u{0}1".into(),
                    retryable: true,
                })
            })
            .await;
        expect_ok(&failed, None);
        let (attempt, _) = min.ready(a).await;
        expect_ok(&min.claim(a).await, Some("claimed"));
        // The result keeps its NUL (stored as the JSON escape); the summary is text.
        let result = json!({"stdout": "a\u{0}b"});
        let done = min
            .request(submit(a, attempt, result.clone(), "printed \u{0}"))
            .await;
        expect_ok(&done, Some("done"));
        let step = hub.step(&team.key, a).await;
        assert_eq!(step["status"], "done");
        assert_eq!(step["result"], result);
        assert_eq!(step["summary"], "printed \u{FFFD}");
        let (status, timeline) = hub
            .call(
                Method::GET,
                &format!("/v1/tasks/{}/timeline", step["task_id"].as_str().unwrap()),
                &team.key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(timeline.to_string().contains("exit\u{FFFD}1"), "{timeline}");
    }
}

// ---------------------------------------------------------------- files

async fn upload(hub: &Hub, key: &str, query_name: &str) -> (StatusCode, Value) {
    let resp = hub
        .http
        .put(format!("{}/v1/files?name={query_name}", hub.base))
        .bearer_auth(key)
        .body("hello")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_names_are_sanitised_and_downloads_name_them_safely() {
    for hub in Hub::all(module_path!(), Settings::default()).await {
        let team = team(&hub.ctx).await;
        for (query_name, stored, header) in [
            (
                "report%0d%0a.txt",
                "report__.txt",
                "attachment; filename=\"report__.txt\"; filename*=UTF-8''report__.txt",
            ),
            (
                "r%C3%A9sum%C3%A9%20%22v2%22.txt",
                "résumé \"v2\".txt",
                "attachment; filename=\"r_sum_ _v2_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.txt",
            ),
        ] {
            let (status, file) = upload(&hub, &team.key, query_name).await;
            assert_eq!(status, StatusCode::CREATED, "{file}");
            assert_eq!(file["name"], stored);
            let resp = hub
                .http
                .get(format!(
                    "{}/v1/files/{}",
                    hub.base,
                    file["id"].as_str().unwrap()
                ))
                .bearer_auth(&team.key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["content-disposition"], header);
            assert_eq!(resp.text().await.unwrap(), "hello");
        }
        // A name that is nothing but control characters is no name.
        let (status, err) = upload(&hub, &team.key, "%0d%0a").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], "name");
    }
    // Whatever a stored name holds, the header is valid.
    for name in ["a\r\nb", "\u{0}", "\"\\", "文件.txt"] {
        let header = files::content_disposition(name);
        assert!(
            reqwest::header::HeaderValue::from_str(&header).is_ok(),
            "{header}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_left_over_uploads_past_the_grace_period() {
    for hub in Hub::all(module_path!(), Settings::default()).await {
        let team = team(&hub.ctx).await;
        let (status, kept) = upload(&hub, &team.key, "kept.txt").await;
        assert_eq!(status, StatusCode::CREATED, "{kept}");
        let data_dir = hub.ctx.settings.data_dir.clone();
        let month = data_dir.join("uploads/2026/11");
        std::fs::create_dir_all(&month).unwrap();
        let old = SystemTime::now() - Duration::from_secs(2 * 60 * 60);
        let write = |name: &str, modified: Option<SystemTime>| {
            let path = month.join(name);
            let file = std::fs::File::create(&path).unwrap();
            if let Some(modified) = modified {
                file.set_modified(modified).unwrap();
            }
            path
        };
        let old_partial = write(&format!("{}.partial", Uuid::now_v7()), Some(old));
        let old_orphan = write(&Uuid::now_v7().to_string(), Some(old));
        // Young files may be another hub's upload in progress.
        let young_partial = write(&format!("{}.partial", Uuid::now_v7()), None);
        let young_orphan = write(&Uuid::now_v7().to_string(), None);
        // The real upload, as old as the orphans: its row keeps it.
        let (_, kept_path) = files::find(
            &hub.ctx,
            &agenthub::accounts::Actor::Agent(
                agents::authenticate_token(&hub.ctx.store, &team.min)
                    .await
                    .unwrap(),
            ),
            kept["id"].as_str().unwrap(),
        )
        .await
        .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&kept_path)
            .unwrap()
            .set_modified(old)
            .unwrap();

        let cleaned = files::remove_orphans(&hub.ctx.store, &data_dir, files::ORPHAN_GRACE)
            .await
            .unwrap();
        assert_eq!(
            cleaned,
            files::Cleaned {
                partial: 1,
                orphans: 1
            }
        );
        assert!(!old_partial.exists());
        assert!(!old_orphan.exists());
        assert!(young_partial.exists());
        assert!(young_orphan.exists());
        assert!(kept_path.exists());
        let resp = hub
            .http
            .get(format!(
                "{}/v1/files/{}",
                hub.base,
                kept["id"].as_str().unwrap()
            ))
            .bearer_auth(&team.key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.text().await.unwrap(), "hello");
    }
}
