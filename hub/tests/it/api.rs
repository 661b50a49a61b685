//! The REST API against a real hub on 127.0.0.1: the quick start, bad input, workspace
//! isolation on every route, uploads and the operational endpoints, on both backends.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use agenthub::accounts::{self, AgentActor, Role};
use agenthub::agents::{self, NewAgent};
use agenthub::api;
use agenthub::ctx::{Ctx, Settings};
use agenthub::store::Backend;
use agenthub::tasks::{self, Submitted};

use crate::support::TestDb;

/// A hub serving on an ephemeral port, stopped on drop.
struct Server {
    base: String,
    ctx: Ctx,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _db: TestDb,
    _data_dir: tempfile::TempDir,
}

impl Server {
    async fn start(db: TestDb, settings: Settings) -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(
            db.store(),
            Settings {
                data_dir: data_dir.path().to_path_buf(),
                ..settings
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
        Server {
            base,
            ctx,
            http: reqwest::Client::new(),
            _stop: stop,
            _db: db,
            _data_dir: data_dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: &'static str,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// A workspace with an owner key, a reviewer, and two agents.
struct Team {
    key: String,
    reviewer_key: String,
    min: AgentActor,
    min_token: String,
}

async fn team(ctx: &Ctx, workspace: &str) -> Team {
    let store = &ctx.store;
    let ws = accounts::create_workspace(store, workspace).await.unwrap();
    accounts::add_member(store, &ws.id, "aurora@example.com", None, Role::Owner)
        .await
        .unwrap();
    accounts::add_member(store, &ws.id, "min@example.com", None, Role::Member)
        .await
        .unwrap();
    let key = accounts::create_api_key(store, &ws.id, "aurora@example.com", None)
        .await
        .unwrap()
        .secret;
    let reviewer_key = accounts::create_api_key(store, &ws.id, "min@example.com", None)
        .await
        .unwrap()
        .secret;
    let new = |name: &'static str, owner: &'static str| NewAgent {
        workspace_id: &ws.id,
        name,
        owner,
        capabilities: &[],
        max_concurrency: 2,
    };
    let min = agents::create_agent(store, new("min-laptop", "min@example.com"))
        .await
        .unwrap();
    agents::create_agent(store, new("duan-desktop", "aurora@example.com"))
        .await
        .unwrap();
    let min_actor = agents::authenticate_token(store, &min.token).await.unwrap();
    Team {
        key,
        reviewer_key,
        min: min_actor,
        min_token: min.token,
    }
}

fn report_body() -> Value {
    json!({"title": "Quarterly report", "description": "Break down the director's report, then review it",
       "steps": [
         {"key": "draft", "title": "Draft the outline", "assignees": ["min-laptop"]},
         {"key": "review", "title": "Review the outline", "assignees": ["duan-desktop"],
          "depends_on": ["draft"], "approval_level": 2, "approvers": ["aurora@example.com"]}]})
}

async fn servers(test_name: &str, settings: Settings) -> Vec<Server> {
    let mut servers = Vec::new();
    for db in TestDb::all(test_name).await {
        servers.push(Server::start(db, settings.clone()).await);
    }
    servers
}

#[tokio::test(flavor = "multi_thread")]
async fn quick_start_task_answers_with_steps_and_involved_agents() {
    for server in servers(
        "api::quick_start_task_answers_with_steps_and_involved_agents",
        Settings::default(),
    )
    .await
    {
        let team = team(&server.ctx, "acme").await;
        let (status, task) = server
            .call(
                Method::POST,
                "/v1/tasks",
                Some(&team.key),
                Some(report_body()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        assert!(task["id"].as_str().is_some_and(|id| id.len() == 36));
        let steps: Vec<(&str, &str)> = task["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| {
                (
                    step["key"].as_str().unwrap(),
                    step["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(steps, [("draft", "ready"), ("review", "pending")]);
        assert!(task["steps"][0]["id"].as_str().is_some());
        let mut involved: Vec<(String, bool)> = task["involved_agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|agent| {
                (
                    agent["name"].as_str().unwrap().to_string(),
                    agent["online"].as_bool().unwrap(),
                )
            })
            .collect();
        involved.sort();
        assert_eq!(
            involved,
            [
                ("duan-desktop".to_string(), false),
                ("min-laptop".to_string(), false)
            ]
        );

        // Read back, list, and follow the first step through to the second one.
        let task_id = task["id"].as_str().unwrap();
        let (status, fetched) = server
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}"),
                Some(&team.key),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fetched["steps"], task["steps"]);
        let (_, list) = server
            .call(Method::GET, "/v1/tasks", Some(&team.key), None)
            .await;
        assert_eq!(list["meta"]["count"], 1);
        let draft_id = task["steps"][0]["id"].as_str().unwrap().to_string();
        tasks::claim_step(&server.ctx, &team.min, &draft_id)
            .await
            .unwrap();
        let submitted = Submitted {
            step_id: draft_id.clone(),
            attempt: 1,
            result: json!({"outline": ["a", "b"]}),
            summary: Some("outline".into()),
            self_check: None,
            check: None,
            files: vec![],
            usage: None,
        };
        tasks::submit_step(&server.ctx, &team.min, submitted)
            .await
            .unwrap();
        let (_, step) = server
            .call(
                Method::GET,
                &format!("/v1/steps/{draft_id}"),
                Some(&team.key),
                None,
            )
            .await;
        assert_eq!(step["status"], "done");
        assert_eq!(step["result"], json!({"outline": ["a", "b"]}));
        let (_, fetched) = server
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}"),
                Some(&team.key),
                None,
            )
            .await;
        assert_eq!(fetched["steps"][1]["status"], "ready");

        // The creator follows along through their events.
        let (_, events) = server
            .call(
                Method::GET,
                "/v1/events?after=0&limit=1",
                Some(&team.key),
                None,
            )
            .await;
        assert_eq!(events["events"][0]["type"], "task.created");
        assert_eq!(events["meta"]["has_more"], true);
        let next = events["meta"]["next_after"].as_u64().unwrap();
        let (_, events) = server
            .call(
                Method::GET,
                &format!("/v1/events?after={next}"),
                Some(&team.key),
                None,
            )
            .await;
        assert_eq!(events["events"][0]["type"], "step.completed");
        assert_eq!(events["events"][0]["seq"], 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_4xx_naming_the_problem() {
    let settings = Settings::default();
    for server in servers("api::bad_input_gets_a_4xx_naming_the_problem", settings).await {
        let team = team(&server.ctx, "acme").await;
        let key = team.key.as_str();
        let cases: Vec<(&'static str, StatusCode, &str, Option<&str>)> = vec![
            ("{\"title\": ", StatusCode::BAD_REQUEST, "bad_request", None),
            (
                "{\"title\": 5, \"steps\": []}",
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some("title"),
            ),
            (
                "{\"title\": \"t\"}",
                StatusCode::BAD_REQUEST,
                "bad_request",
                None,
            ),
            (
                "{\"title\": \"t\", \"steps\": [{\"title\": \"x\", \"assignees\": [\"min-laptop\"]}]}",
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some("steps[0]"),
            ),
            (
                "{\"title\": \"t\", \"steps\": [{\"key\": \"a\", \"title\": \"x\", \"assignees\": [\"min-laptop\"], \"approval_level\": \"high\"}]}",
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some("steps[0].approval_level"),
            ),
            (
                "{\"title\": \"t\", \"colour\": \"red\", \"steps\": []}",
                StatusCode::BAD_REQUEST,
                "bad_request",
                None,
            ),
            ("[1, 2]", StatusCode::BAD_REQUEST, "bad_request", None),
            (
                "{\"title\": \"t\", \"steps\": []}",
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Some("steps"),
            ),
        ];
        for (body, status, code, field) in cases {
            let (got, err) = server.raw(Method::POST, "/v1/tasks", key, body).await;
            assert_eq!(got, status, "{body}: {err}");
            assert_eq!(err["error"]["code"], code, "{body}: {err}");
            assert!(!err["error"]["message"].as_str().unwrap().is_empty());
            if let Some(field) = field {
                assert!(
                    err["error"]["field"]
                        .as_str()
                        .is_some_and(|got| got.starts_with(field)),
                    "{body}: {err}"
                );
            }
        }
        // Rule violations are 422s naming the step.
        let cycle = json!({"title": "t", "steps": [
            {"key": "a", "title": "A", "assignees": ["min-laptop"], "depends_on": ["b"]},
            {"key": "b", "title": "B", "assignees": ["min-laptop"], "depends_on": ["a"]}]});
        let (status, err) = server
            .call(Method::POST, "/v1/tasks", Some(key), Some(cycle))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            err["error"]["message"].as_str().unwrap().contains("cycle"),
            "{err}"
        );
        let unknown =
            json!({"title": "t", "steps": [{"key": "a", "title": "A", "assignees": ["nobody"]}]});
        let (status, err) = server
            .call(Method::POST, "/v1/tasks", Some(key), Some(unknown))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            err["error"]["message"],
            "step `a`: assignee `nobody` is not an agent of this workspace"
        );
        let (status, err) = server
            .call(Method::POST, "/v1/tasks", Some(key), Some(report_body()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{err}");
        let task_id = err["id"].as_str().unwrap().to_string();
        let (status, err) = server
            .call(
                Method::PATCH,
                &format!("/v1/tasks/{task_id}"),
                Some(key),
                Some(json!({"action": "explode"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"]["field"], "action");
        let (status, err) = server
            .call(
                Method::PATCH,
                &format!("/v1/tasks/{task_id}"),
                Some(key),
                Some(json!({"action": "archive"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            err["error"]["message"],
            "task is active; it cannot become archived"
        );
        // Body limit, auth, routing.
        let huge = json!({"title": "x".repeat(2 * 1024 * 1024), "steps": []});
        let (status, err) = server
            .call(Method::POST, "/v1/tasks", Some(key), Some(huge))
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
        assert_eq!(err["error"]["code"], "too_large", "{err}");
        let (status, err) = server.call(Method::GET, "/v1/tasks", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(err["error"]["code"], "unauthorized");
        for token in [
            "ahk_nope",
            "aha_0000000000000000000000000000000000000000000000000000000000000000",
            "Basic x",
        ] {
            let (status, _) = server
                .call(Method::GET, "/v1/tasks", Some(token), None)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        }
        let (status, err) = server
            .call(Method::GET, "/v1/nothing", Some(key), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(err["error"]["code"], "not_found");
        let (status, _) = server
            .call(Method::DELETE, "/v1/tasks", Some(key), None)
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_query_string_is_a_400_in_the_error_envelope() {
    let settings = Settings::default();
    let name = "api::a_bad_query_string_is_a_400_in_the_error_envelope";
    for server in servers(name, settings).await {
        let team = team(&server.ctx, "acme").await;
        let key = team.key.as_str();
        for (path, needle) in [
            ("/v1/tasks?limit=many", "limit"),
            ("/v1/tasks?limit=-1", "limit"),
            ("/v1/events?after=yesterday", "after"),
            (
                "/v1/tasks?status=finished",
                "unknown task status `finished`",
            ),
        ] {
            let (status, err) = server.call(Method::GET, path, Some(key), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
            assert_eq!(err["error"]["code"], "bad_request", "{path}: {err}");
            let message = err["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{path}: {err}");
        }
        let (status, err) = server
            .call(Method::GET, "/v1/tasks?limit=2", Some(key), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{err}");
    }
}

/// What docs/api.md's route reference promises every route, read from the OpenAPI
/// document so that a new route is held to it too: `401` without a token, `400` for a
/// malformed JSON body or a query number that is not one, `413` for a JSON body over
/// 1 MiB, `404` for an id that does not exist; each in the error envelope.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_keeps_the_shared_promises() {
    let doc = serde_json::to_value(<api::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
    let name = "api::every_documented_route_keeps_the_shared_promises";
    for server in servers(name, Settings::default()).await {
        let team = team(&server.ctx, "acme").await;
        let key = team.key.as_str();
        let mut n_checks = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            // Every `{parameter}` becomes an id that does not exist.
            let concrete: Vec<String> = path
                .split('/')
                .map(|segment| match segment.starts_with('{') {
                    true => uuid::Uuid::now_v7().to_string(),
                    false => segment.to_string(),
                })
                .collect();
            let concrete = concrete.join("/");
            for (method, operation) in item.as_object().unwrap() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let route = format!("{method} {path}");
                let responses = &operation["responses"];
                let mut expect = |(status, err): (StatusCode, Value), want: u16, code: &str| {
                    n_checks += 1;
                    assert_eq!(status.as_u16(), want, "{route}: {err}");
                    assert_eq!(err["error"]["code"], code, "{route}: {err}");
                    assert!(
                        responses.get(want.to_string()).is_some(),
                        "{route}: {want} undocumented"
                    );
                };
                if responses.get("401").is_some() {
                    let answer = server.call(method.clone(), &concrete, None, None).await;
                    expect(answer, 401, "unauthorized");
                }
                if operation["requestBody"]["content"]
                    .get("application/json")
                    .is_some()
                {
                    let answer = server.raw(method.clone(), &concrete, key, "{\"x\": ").await;
                    expect(answer, 400, "bad_request");
                    let resp = server
                        .http
                        .request(method.clone(), format!("{}{concrete}", server.base))
                        .bearer_auth(key)
                        .header("content-type", "application/json")
                        .body(vec![b' '; api::MAX_JSON_BODY + 1])
                        .send()
                        .await
                        .unwrap();
                    let status = resp.status();
                    let err = resp.json().await.unwrap_or(Value::Null);
                    expect((status, err), 413, "too_large");
                }
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let types = parameter["schema"]["type"].to_string();
                    if parameter["in"] == "query" && types.contains("integer") {
                        let with_query =
                            format!("{concrete}?{}=many", parameter["name"].as_str().unwrap());
                        let answer = server
                            .call(method.clone(), &with_query, Some(key), None)
                            .await;
                        expect(answer, 400, "bad_request");
                    }
                }
                if method == Method::GET && path.contains('{') {
                    let answer = server
                        .call(method.clone(), &concrete, Some(key), None)
                        .await;
                    expect(answer, 404, "not_found");
                }
            }
        }
        assert!(
            n_checks > 30,
            "only {n_checks} checks: is the document empty?"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_body_over_the_limit_is_a_413_in_the_error_envelope() {
    let name = "api::a_chunked_body_over_the_limit_is_a_413_in_the_error_envelope";
    for server in servers(name, Settings::default()).await {
        let team = team(&server.ctx, "acme").await;
        let step_id = uuid::Uuid::now_v7();
        for path in [
            "/v1/tasks".to_string(),
            format!("/v1/steps/{step_id}/approve"),
        ] {
            // No Content-Length: the limit is found while reading.
            let chunks = vec![
                Ok::<_, std::io::Error>(vec![b' '; api::MAX_JSON_BODY]),
                Ok(vec![b' '; 1024]),
            ];
            let resp = server
                .http
                .post(format!("{}{path}", server.base))
                .bearer_auth(&team.key)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                )))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {text}");
            let err: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert_eq!(err["error"]["code"], "too_large", "{path}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_cannot_reach_another_workspaces_data_on_any_route() {
    for server in servers(
        "api::a_workspace_cannot_reach_another_workspaces_data_on_any_route",
        Settings::default(),
    )
    .await
    {
        let acme = team(&server.ctx, "acme").await;
        let other = team(&server.ctx, "globex").await;
        // Acme has a task whose step waits for approval and another blocked on a question.
        let (_, task) = server
            .call(
                Method::POST,
                "/v1/tasks",
                Some(&acme.key),
                Some(report_body()),
            )
            .await;
        let task_id = task["id"].as_str().unwrap().to_string();
        let draft_id = task["steps"][0]["id"].as_str().unwrap().to_string();
        tasks::claim_step(&server.ctx, &acme.min, &draft_id)
            .await
            .unwrap();
        let request_id =
            agenthub::approvals::ask(&server.ctx, &acme.min, &draft_id, 1, "Which quarter?", &[])
                .await
                .unwrap();
        let upload = server
            .http
            .put(format!("{}/v1/files?name=report.txt", server.base))
            .bearer_auth(&acme.key)
            .body("secret numbers")
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
        let file_id = upload.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let agent_id = acme.min.agent_id.clone();

        for token in [other.key.as_str(), other.min_token.as_str()] {
            let not_found: Vec<(Method, String, Option<Value>)> = vec![
                (Method::GET, format!("/v1/tasks/{task_id}"), None),
                (
                    Method::PATCH,
                    format!("/v1/tasks/{task_id}"),
                    Some(json!({"action": "cancel"})),
                ),
                (
                    Method::PATCH,
                    format!("/v1/tasks/{task_id}/workflow"),
                    Some(
                        json!({"reason": "r", "operations": [{"op": "remove_step", "step": "review"}]}),
                    ),
                ),
                (Method::GET, format!("/v1/tasks/{task_id}/history"), None),
                (Method::GET, format!("/v1/steps/{draft_id}"), None),
                (Method::GET, format!("/v1/steps/{draft_id}/logs"), None),
                (
                    Method::POST,
                    format!("/v1/steps/{draft_id}/approve"),
                    Some(json!({"attempt": 1})),
                ),
                (
                    Method::POST,
                    format!("/v1/steps/{draft_id}/reject"),
                    Some(json!({"attempt": 1, "comment": "no"})),
                ),
                (
                    Method::POST,
                    format!("/v1/input-requests/{request_id}/answer"),
                    Some(json!({"answer": "Q3"})),
                ),
                (Method::GET, format!("/v1/agents/{agent_id}"), None),
                (
                    Method::POST,
                    format!("/v1/agents/{agent_id}/availability"),
                    Some(json!({"question": "free?"})),
                ),
                (Method::GET, format!("/v1/files/{file_id}"), None),
            ];
            for (method, path, body) in not_found {
                let (status, err) = server.call(method.clone(), &path, Some(token), body).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {err}");
            }
            let (_, list) = server
                .call(Method::GET, "/v1/tasks", Some(token), None)
                .await;
            assert_eq!(list["meta"]["count"], 0);
            let (_, agents) = server
                .call(Method::GET, "/v1/agents", Some(token), None)
                .await;
            assert!(
                agents["agents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|agent| agent["id"] != agent_id.as_str())
            );
            let (_, inbox) = server
                .call(Method::GET, "/v1/me/inbox", Some(token), None)
                .await;
            assert_eq!(inbox["approvals"], json!([]));
            assert_eq!(inbox["questions"], json!([]));
            let (_, events) = server
                .call(Method::GET, "/v1/events", Some(token), None)
                .await;
            assert_eq!(events["meta"]["count"], 0, "{events}");
        }
        // Nothing of acme changed.
        let (_, task) = server
            .call(
                Method::GET,
                &format!("/v1/tasks/{task_id}"),
                Some(&acme.key),
                None,
            )
            .await;
        assert_eq!(task["status"], "active");
        assert_eq!(task["steps"].as_array().unwrap().len(), 2);
        assert_eq!(task["steps"][0]["status"], "blocked");
        // The asked member answers; the step runs again.
        let (_, inbox) = server
            .call(Method::GET, "/v1/me/inbox", Some(&acme.reviewer_key), None)
            .await;
        assert_eq!(inbox["questions"][0]["id"], request_id.as_str());
        let (status, answered) = server
            .call(
                Method::POST,
                &format!("/v1/input-requests/{request_id}/answer"),
                Some(&acme.reviewer_key),
                Some(json!({"answer": "Q3"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answered}");
        let (_, step) = server
            .call(
                Method::GET,
                &format!("/v1/steps/{draft_id}"),
                Some(&acme.key),
                None,
            )
            .await;
        assert_eq!(step["status"], "running");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn review_by_rest_approves_and_rejects_with_rework() {
    for server in servers(
        "api::review_by_rest_approves_and_rejects_with_rework",
        Settings::default(),
    )
    .await
    {
        let team = team(&server.ctx, "acme").await;
        let body = json!({"title": "Review", "steps": [
            {"key": "write", "title": "Write", "assignees": ["min-laptop"], "approval_level": 2, "approvers": ["aurora@example.com"]}]});
        let (_, task) = server
            .call(Method::POST, "/v1/tasks", Some(&team.key), Some(body))
            .await;
        let step_id = task["steps"][0]["id"].as_str().unwrap().to_string();
        let submit = |attempt: u32| Submitted {
            step_id: step_id.clone(),
            attempt,
            result: json!({"text": attempt}),
            summary: Some(format!("attempt {attempt}")),
            self_check: None,
            check: None,
            files: vec![],
            usage: None,
        };
        tasks::claim_step(&server.ctx, &team.min, &step_id)
            .await
            .unwrap();
        tasks::submit_step(&server.ctx, &team.min, submit(1))
            .await
            .unwrap();
        // Only a listed approver decides; a rejection needs a comment.
        let (status, _) = server
            .call(
                Method::POST,
                &format!("/v1/steps/{step_id}/approve"),
                Some(&team.reviewer_key),
                Some(json!({"attempt": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, err) = server
            .call(
                Method::POST,
                &format!("/v1/steps/{step_id}/reject"),
                Some(&team.key),
                Some(json!({"attempt": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err["error"]["field"], "comment");
        let (_, inbox) = server
            .call(Method::GET, "/v1/me/inbox", Some(&team.key), None)
            .await;
        assert_eq!(inbox["approvals"][0]["step_id"], step_id.as_str());
        assert_eq!(inbox["approvals"][0]["summary"], "attempt 1");
        let (status, decided) = server
            .call(
                Method::POST,
                &format!("/v1/steps/{step_id}/reject"),
                Some(&team.key),
                Some(json!({"attempt": 1, "comment": "shorter"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{decided}");
        assert_eq!(decided["step_status"], "ready");
        let (_, step) = server
            .call(
                Method::GET,
                &format!("/v1/steps/{step_id}"),
                Some(&team.key),
                None,
            )
            .await;
        assert_eq!(
            (step["attempt"].as_i64(), step["rework_comment"].as_str()),
            (Some(2), Some("shorter"))
        );
        tasks::claim_step(&server.ctx, &team.min, &step_id)
            .await
            .unwrap();
        tasks::submit_step(&server.ctx, &team.min, submit(2))
            .await
            .unwrap();
        // A decision names the attempt and may name the digest it saw; an old attempt,
        // another digest or no attempt at all is refused.
        let (_, inbox) = server
            .call(Method::GET, "/v1/me/inbox", Some(&team.key), None)
            .await;
        assert_eq!(inbox["approvals"][0]["attempt"], 2);
        let digest = inbox["approvals"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(digest.starts_with("sha256:"), "{inbox}");
        for (body, status, needle) in [
            (
                json!({"attempt": 1}),
                StatusCode::CONFLICT,
                "attempt 1 is no longer current",
            ),
            (
                json!({"attempt": 2, "digest": "sha256:00"}),
                StatusCode::CONFLICT,
                "look at it again",
            ),
            (json!({}), StatusCode::BAD_REQUEST, "attempt"),
        ] {
            let (got, err) = server
                .call(
                    Method::POST,
                    &format!("/v1/steps/{step_id}/approve"),
                    Some(&team.key),
                    Some(body),
                )
                .await;
            assert_eq!(got, status, "{err}");
            assert!(
                err["error"]["message"].as_str().unwrap().contains(needle),
                "{err}"
            );
        }
        let (_, step) = server
            .call(
                Method::GET,
                &format!("/v1/steps/{step_id}"),
                Some(&team.key),
                None,
            )
            .await;
        assert_eq!(
            (step["status"].as_str(), step["digest"].as_str()),
            (Some("awaiting_approval"), Some(digest.as_str()))
        );
        let (status, decided) = server
            .call(
                Method::POST,
                &format!("/v1/steps/{step_id}/approve"),
                Some(&team.key),
                Some(json!({"attempt": 2, "digest": digest})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{decided}");
        assert_eq!(decided["step_status"], "done");
        let (status, _) = server
            .call(
                Method::POST,
                &format!("/v1/steps/{step_id}/approve"),
                Some(&team.key),
                Some(json!({"attempt": 2})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (_, task) = server
            .call(
                Method::GET,
                &format!("/v1/tasks/{}", task["id"].as_str().unwrap()),
                Some(&team.key),
                None,
            )
            .await;
        assert_eq!(task["status"], "done");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_stream_to_disk_within_the_limit() {
    let settings = Settings {
        max_upload_bytes: 1024,
        ..Settings::default()
    };
    for server in servers("api::uploads_stream_to_disk_within_the_limit", settings).await {
        let team = team(&server.ctx, "acme").await;
        let resp = server
            .http
            .put(format!("{}/v1/files?name=notes.md", server.base))
            .bearer_auth(&team.min_token)
            .header("content-type", "text/markdown")
            .body("# Notes\n")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let file: Value = resp.json().await.unwrap();
        assert_eq!(file["size_bytes"], 8);
        assert_eq!(file["sha256"].as_str().unwrap().len(), 64);
        let resp = server
            .http
            .get(format!(
                "{}/v1/files/{}",
                server.base,
                file["id"].as_str().unwrap()
            ))
            .bearer_auth(&team.key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/markdown");
        // RFC 9530: the SHA-256 of the bytes, base64 between colons.
        let digest = {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"# Notes\n"))
        };
        assert_eq!(
            resp.headers()["repr-digest"],
            format!("sha-256=:{digest}:").as_str()
        );
        assert_eq!(resp.text().await.unwrap(), "# Notes\n");
        let uploads = server.ctx.settings.data_dir.join("uploads");
        let stored: Vec<_> = walk(&uploads);
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert!(
            stored[0]
                .to_string_lossy()
                .contains(file["id"].as_str().unwrap())
        );
        // Too large: refused, and nothing stays on disk.
        let resp = server
            .http
            .put(format!("{}/v1/files?name=big.bin", server.base))
            .bearer_auth(&team.key)
            .body(vec![7u8; 4096])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(walk(&uploads).len(), 1);
        let resp = server
            .http
            .put(format!("{}/v1/files", server.base))
            .bearer_auth(&team.key)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let resp = server
            .http
            .put(format!("{}/v1/files?name=../../etc", server.base))
            .bearer_auth(&team.key)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            if entry.path().is_dir() {
                walk(&entry.path())
            } else {
                vec![entry.path()]
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn operational_endpoints_answer() {
    for server in servers("api::operational_endpoints_answer", Settings::default()).await {
        let (status, body) = server.call(Method::GET, "/healthz", None, None).await;
        assert_eq!((status, body), (StatusCode::OK, Value::String("ok".into())));
        let (status, _) = server.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, spec) = server
            .call(Method::GET, "/v1/openapi.json", None, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        for path in [
            "/v1/tasks",
            "/v1/tasks/{id}/workflow",
            "/v1/steps/{id}/approve",
            "/v1/events",
            "/v1/files",
        ] {
            assert!(spec["paths"].get(path).is_some(), "openapi lacks {path}");
        }
        let (status, metrics) = server.call(Method::GET, "/metrics", None, None).await;
        assert_eq!(status, StatusCode::OK);
        let metrics = metrics.as_str().unwrap().to_string();
        assert!(
            metrics.contains("agenthub_http_requests_total{method=\"GET\",status=\"200\"}"),
            "{metrics}"
        );
    }
}

/// On SQLite `/metrics` says how busy the one writer is and how large its groups are
/// (transactions per commit); on PostgreSQL, which has no single writer, those are absent.
#[tokio::test(flavor = "multi_thread")]
async fn the_sqlite_writers_load_is_in_the_metrics() {
    const WRITER: &str = "agenthub_sqlite_writer_";
    for server in servers(
        "api::the_sqlite_writers_load_is_in_the_metrics",
        Settings::default(),
    )
    .await
    {
        let team = team(&server.ctx, "acme").await;
        let before = writer_metrics(&server).await;
        // Eight creates at once: run in batches (one write transaction for the creates
        // that queued while the writer was busy), committed alone or together.
        let creates = (0..8).map(|_| {
            server.call(
                Method::POST,
                "/v1/tasks",
                Some(&team.key),
                Some(report_body()),
            )
        });
        for (status, task) in futures_util::future::join_all(creates).await {
            assert_eq!(status, StatusCode::CREATED, "{task}");
        }
        let after = writer_metrics(&server).await;
        if server.ctx.store.backend() == Backend::Postgres {
            assert!(before.is_empty() && after.is_empty(), "{after:?}");
            continue;
        }
        let grew = |name: &str| {
            let name = format!("{WRITER}{name}");
            after[&name] - before.get(&name).copied().unwrap_or(0.0)
        };
        let transactions = grew("transactions_total");
        let commits = grew("commits_total");
        assert!(transactions >= 1.0, "{after:?}");
        assert!((1.0..=transactions).contains(&commits), "{after:?}");
        assert!(grew("busy_seconds_total") > 0.0, "{after:?}");
        assert!(grew("wait_seconds_total") >= 0.0, "{after:?}");
    }
}

/// The `agenthub_sqlite_writer_*` samples of `/metrics`, by name.
async fn writer_metrics(server: &Server) -> HashMap<String, f64> {
    let (status, text) = server.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    text.as_str()
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("agenthub_sqlite_writer_"))
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_terminates_tls_itself() {
    let _ = rustls_provider();
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
            ..Settings::default()
        },
    );
    let agent_token = crate::gateway::team(&ctx).await.min;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = api::load_tls(&cert_path, &key_path).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve_tls_with_listener(
        listener,
        ctx,
        tls,
        async move {
            let _ = stopped.await;
        },
        std::time::Duration::from_secs(1),
    ));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "ok");
    // An agent connects over wss:// and completes the handshake.
    {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut request = format!("wss://localhost:{port}/v1/agent/connect")
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert(
            "authorization",
            format!("Bearer {agent_token}").parse().unwrap(),
        );
        headers.insert(
            "sec-websocket-protocol",
            "agenthub.v1.json".parse().unwrap(),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(
                config,
            ))),
        )
        .await
        .unwrap();
        socket
            .send(Message::Text(
                r#"{"type":"hello","agent_version":"tls-test/1"}"#.into(),
            ))
            .await
            .unwrap();
        let welcome = socket.next().await.unwrap().unwrap();
        let welcome: serde_json::Value = serde_json::from_str(welcome.to_text().unwrap()).unwrap();
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["agent_name"], "min-laptop");
    }
    // Plain HTTP on the TLS port does not get through.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .map(|resp| resp.status() != StatusCode::OK)
            .unwrap_or(true)
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Installs the process-wide rustls crypto provider (aws-lc-rs) once.
fn rustls_provider() -> bool {
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_ok()
}
