//! The dashboard against a real hub on 127.0.0.1: sign-in links, sessions and CSRF over
//! plain HTTP on both backends, and the main story in a real headless Chromium driven
//! through WebDriver (chromedriver), with a simulated agent on the real WebSocket.
//! Without Chromium and chromedriver the browser test says it was skipped, by name.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agenthub_protocol::{Codec, PlanStep, SuggestionOp};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use agenthub::accounts;
use agenthub::ctx::Settings;
use agenthub::tasks;
use agenthub::webhooks::WebhookSettings;

use crate::gateway::{Agent, Hub, expect_ok, team, team_named};
use crate::support::{self, Team, TestDb, new_step, new_task, submit};

const WAIT: Duration = Duration::from_secs(15);

/// A client that does not follow redirects and keeps no cookies: the tests look at both.
fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A sign-in link's path for the holder of `token` (an API key or agent token).
async fn link_path(hub: &Hub, token: &str) -> String {
    let (status, body) = hub
        .call(reqwest::Method::POST, "/v1/me/login-link", token, None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body["url"]
            .as_str()
            .unwrap()
            .ends_with(body["path"].as_str().unwrap()),
        "{body}"
    );
    body["path"].as_str().unwrap().to_string()
}

/// Opens a sign-in link; returns the session cookie (`name=value`).
async fn sign_in(hub: &Hub, http: &reqwest::Client, path: &str) -> String {
    let resp = http
        .get(format!("{}{path}", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/");
    let cookie = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    cookie.split(';').next().unwrap().to_string()
}

async fn get_page(
    hub: &Hub,
    http: &reqwest::Client,
    cookie: &str,
    path: &str,
) -> (StatusCode, String) {
    page_of(http.get(format!("{}{path}", hub.base)), cookie).await
}

async fn post_form(
    hub: &Hub,
    http: &reqwest::Client,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let request = http
        .post(format!("{}{path}", hub.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap());
    page_of(request, cookie).await
}

/// A signed-in session as a browser holds it: its cookie and the CSRF token of its forms.
struct Session {
    base: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Session {
    fn new(hub: &Hub, http: &reqwest::Client, cookie: &str, csrf: &str) -> Session {
        Session {
            base: hub.base.clone(),
            http: http.clone(),
            cookie: cookie.to_string(),
            csrf: csrf.to_string(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        page_of(self.http.get(format!("{}{path}", self.base)), &self.cookie).await
    }

    /// Posts a form with the session's CSRF token and `fields`.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut form = vec![("csrf", self.csrf.as_str())];
        form.extend_from_slice(fields);
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).unwrap());
        page_of(request, &self.cookie).await
    }
}

/// Sends `request` with the session `cookie`: the status and the page.
async fn page_of(request: reqwest::RequestBuilder, cookie: &str) -> (StatusCode, String) {
    let resp = request.header("cookie", cookie).send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// The CSRF token of a page's forms.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..][..html[start..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_opens_one_session_and_the_api_ignores_its_cookie() {
    for hub in Hub::all(
        concat!(
            module_path!(),
            "::a_sign_in_link_opens_one_session_and_the_api_ignores_its_cookie"
        ),
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let http = plain_http();

        // Without a session, pages send the browser to the sign-in page.
        let resp = http.get(format!("{}/", hub.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[LOCATION], "/signin");

        let path = link_path(&hub, &team.key).await;
        assert!(path.starts_with("/login/ahl_"), "{path}");
        let cookie = sign_in(&hub, &http, &path).await;
        let (status, html) = get_page(&hub, &http, &cookie, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("aurora@example.com"), "{html}");

        // The link works once.
        let resp = http
            .get(format!("{}{path}", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().get(SET_COOKIE).is_none());
        let html = resp.text().await.unwrap();
        assert!(html.contains("already used or expired"), "{html}");

        // The API stays on bearer tokens: the cookie alone is not a credential there.
        let resp = http
            .get(format!("{}/v1/me", hub.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

        // An agent token gets a link for its bound member (`agentd dashboard`).
        let agent_path = link_path(&hub, &team.min).await;
        let min_cookie = sign_in(&hub, &http, &agent_path).await;
        let (_, html) = get_page(&hub, &http, &min_cookie, "/settings").await;
        assert!(html.contains("min@example.com"), "{html}");

        // An expired link is refused like a used one.
        let stale = link_path(&hub, &team.key).await;
        hub.ctx
            .store
            .transaction(async |db| {
                use diesel_async::RunQueryDsl;
                agenthub::db!(db, |conn| diesel::sql_query(
                    "UPDATE web_sessions SET expires_at = 1 WHERE kind = 'link' AND revoked_at IS NULL"
                )
                .execute(conn)
                .await)?;
                Ok::<_, agenthub::error::Error>(())
            })
            .await
            .unwrap();
        let resp = http
            .get(format!("{}{stale}", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

        // A made-up link is refused the same way.
        let resp = http
            .get(format!("{}/login/ahl_{}", hub.base, "0".repeat(64)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_forms_need_the_sessions_csrf_token_and_sign_out_ends_the_session() {
    for hub in Hub::all(
        concat!(
            module_path!(),
            "::page_forms_need_the_sessions_csrf_token_and_sign_out_ends_the_session"
        ),
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let http = plain_http();
        let (task_id, _) = hub
            .create_task_ids(
                &team.key,
                crate::gateway::one_step("Write", &["min-laptop"]),
            )
            .await;
        let cookie = sign_in(&hub, &http, &link_path(&hub, &team.key).await).await;
        let (status, html) = get_page(&hub, &http, &cookie, &format!("/tasks/{task_id}")).await;
        assert_eq!(status, StatusCode::OK);
        let csrf = csrf_of(&html);
        let browser = Session::new(&hub, &http, &cookie, &csrf);

        // No token, or another one: 403, and the task is unchanged.
        let status_path = format!("/tasks/{task_id}/status");
        for form in [
            vec![("action", "pause")],
            vec![("action", "pause"), ("csrf", "0123456789abcdef")],
        ] {
            let (status, html) = post_form(&hub, &http, &cookie, &status_path, &form).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
            assert!(html.contains("CSRF"), "{html}");
        }
        let (_, task) = hub
            .call(
                reqwest::Method::GET,
                &format!("/v1/tasks/{task_id}"),
                &team.key,
                None,
            )
            .await;
        assert_eq!(task["status"], "active");

        // With the session's token the form works; the header is accepted too.
        let (status, _) = browser.post(&status_path, &[("action", "pause")]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let resp = http
            .post(format!("{}{status_path}", hub.base))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("action=resume")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let (_, task) = hub
            .call(
                reqwest::Method::GET,
                &format!("/v1/tasks/{task_id}"),
                &team.key,
                None,
            )
            .await;
        assert_eq!(task["status"], "active");

        // Another session's token is not this session's.
        let other = sign_in(&hub, &http, &link_path(&hub, &team.key).await).await;
        let (status, _) = post_form(
            &hub,
            &http,
            &other,
            &status_path,
            &[("action", "pause"), ("csrf", &csrf)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // A bad action is a clear error; the domain's rules apply (a member who did not
        // create the task may not steer it).
        let (status, html) = browser.post(&status_path, &[("action", "explode")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("unknown action"), "{html}");
        let min_cookie = sign_in(&hub, &http, &link_path(&hub, &team.min_key).await).await;
        let (_, min_page) = get_page(&hub, &http, &min_cookie, &format!("/tasks/{task_id}")).await;
        let (status, html) = post_form(
            &hub,
            &http,
            &min_cookie,
            &status_path,
            &[("action", "cancel"), ("csrf", &csrf_of(&min_page))],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("creator"), "{html}");

        // Signing out needs the token too, then ends the session.
        let (status, _) = post_form(&hub, &http, &cookie, "/logout", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let resp = http
            .post(format!("{}/logout", hub.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert!(
            resp.headers()[SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        let resp = http
            .get(format!("{}/", hub.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let (status, _) = browser.post(&status_path, &[("action", "pause")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_allow_only_their_own_assets_and_stay_in_the_workspace() {
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let other = team_named(&hub.ctx, "globex").await;
    let (foreign_task, _) = hub
        .create_task_ids(
            &other.key,
            crate::gateway::one_step("Secret", &["min-laptop"]),
        )
        .await;
    let http = plain_http();
    let cookie = sign_in(&hub, &http, &link_path(&hub, &team.key).await).await;

    let resp = http
        .get(format!("{}/tasks", hub.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csp = resp.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    let html = resp.text().await.unwrap();
    assert!(!html.contains("Secret"), "{html}");

    // Every asset a page links to is served with a long cache; others are not found.
    let mut assets = Vec::new();
    for attribute in [r#"href="/assets/"#, r#"src="/assets/"#] {
        let mut rest = html.as_str();
        while let Some(idx) = rest.find(attribute) {
            let start = idx + attribute.len() - "/assets/".len();
            let end = rest[start..].find('"').unwrap();
            assets.push(rest[start..start + end].to_string());
            rest = &rest[start + end..];
        }
    }
    assert_eq!(assets.len(), 3, "{assets:?}");
    for asset in &assets {
        let resp = http
            .get(format!("{}{asset}", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        assert_eq!(
            resp.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
    }
    let resp = http
        .get(format!("{}/assets/app-000000000000.css", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Another workspace's task is not found, on its page and on its live stream.
    for path in [
        format!("/tasks/{foreign_task}"),
        format!("/live/tasks/{foreign_task}"),
    ] {
        let (status, html) = get_page(&hub, &http, &cookie, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {html}");
        assert!(!html.contains("Secret"));
    }

    // A member's settings show their own keys only, and no member management.
    let min_cookie = sign_in(&hub, &http, &link_path(&hub, &team.min_key).await).await;
    let (_, owner_settings) = get_page(&hub, &http, &cookie, "/settings").await;
    let (_, member_settings) = get_page(&hub, &http, &min_cookie, "/settings").await;
    let aurora_prefix = &team.key[..12];
    let min_prefix = &team.min_key[..12];
    assert!(owner_settings.contains("<h2>Members</h2>"));
    assert!(owner_settings.contains(aurora_prefix) && owner_settings.contains(min_prefix));
    assert!(
        !member_settings.contains("<h2>Members</h2>"),
        "{member_settings}"
    );
    assert!(member_settings.contains(min_prefix));
    assert!(
        !member_settings.contains(aurora_prefix),
        "{member_settings}"
    );
    // … and cannot change a role.
    let (status, _) = post_form(
        &hub,
        &http,
        &min_cookie,
        "/settings/members/whoever/role",
        &[("role", "owner"), ("csrf", &csrf_of(&member_settings))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------- the browser

/// The unread counts of `html`'s header: (waiting on you, for your information).
/// `PUT /files` from a page with the session cookie and, when given, the CSRF header.
async fn page_upload(
    hub: &Hub,
    http: &reqwest::Client,
    cookie: &str,
    csrf: Option<&str>,
    name: &str,
    bytes: &'static [u8],
) -> (StatusCode, Value) {
    let mut req = http
        .put(format!(
            "{}/files?{}",
            hub.base,
            serde_urlencoded::to_string([("name", name)]).unwrap()
        ))
        .header("cookie", cookie)
        .header("content-type", "text/plain")
        .body(bytes);
    if let Some(csrf) = csrf {
        req = req.header("x-csrf-token", csrf);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_upload_from_the_form_and_download_from_the_task_page() {
    for hub in Hub::all(
        concat!(
            module_path!(),
            "::attachments_upload_from_the_form_and_download_from_the_task_page"
        ),
        Settings::default(),
    )
    .await
    {
        let team = team(&hub.ctx).await;
        let other = team_named(&hub.ctx, "globex").await;
        let http = plain_http();
        let cookie = sign_in(&hub, &http, &link_path(&hub, &team.key).await).await;
        let (_, form) = get_page(&hub, &http, &cookie, "/tasks/new").await;
        let csrf = csrf_of(&form);
        let browser = Session::new(&hub, &http, &cookie, &csrf);
        assert!(
            form.contains(r#"<option value="member:min@example.com">"#),
            "a member can be the assignee: {form}"
        );

        // An upload without the CSRF header is refused and stores nothing.
        let (status, body) = page_upload(&hub, &http, &cookie, None, "a.txt", b"x").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("CSRF"),
            "{body}"
        );
        // Without a name: the API's error, as JSON for the form's script.
        let (status, body) = page_upload(&hub, &http, &cookie, Some(&csrf), "", b"x").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "name", "{body}");
        let (status, uploaded) = page_upload(
            &hub,
            &http,
            &cookie,
            Some(&csrf),
            "notes <b>.html",
            b"<script>alert(1)</script>",
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{uploaded}");
        let file_id = uploaded["id"].as_str().unwrap().to_string();

        // A file of another workspace cannot be attached; nothing is created.
        let resp = http
            .put(format!("{}/v1/files?name=secret.txt", hub.base))
            .bearer_auth(&other.key)
            .body("secret")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let foreign: Value = resp.json().await.unwrap();
        let foreign_id = foreign["id"].as_str().unwrap();
        let step_fields = |attachment: &str| {
            vec![
                ("csrf".to_string(), csrf.clone()),
                ("title".to_string(), "Brief".to_string()),
                ("steps.0.title".to_string(), "Read the notes".to_string()),
                (
                    "steps.0.assignees".to_string(),
                    "member:min@example.com".to_string(),
                ),
                ("steps.0.attachments".to_string(), attachment.to_string()),
            ]
        };
        let resp = http
            .post(format!("{}/tasks/new", hub.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(step_fields(foreign_id)).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = resp.text().await.unwrap();
        assert!(html.contains("upload it again"), "{html}");
        let (_, listed) = hub
            .call(reqwest::Method::GET, "/v1/tasks", &team.key, None)
            .await;
        assert_eq!(listed["tasks"].as_array().unwrap().len(), 0, "{listed}");

        // The uploaded file reaches the step as `input.attachments`, for any of min's
        // machines.
        let resp = http
            .post(format!("{}/tasks/new", hub.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(step_fields(&file_id)).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let task_path = resp.headers()[LOCATION].to_str().unwrap().to_string();
        let task_id = task_path.trim_start_matches("/tasks/");
        let (_, task) = hub
            .call(
                reqwest::Method::GET,
                &format!("/v1/tasks/{task_id}"),
                &team.key,
                None,
            )
            .await;
        let step = &task["steps"][0];
        assert_eq!(step["input"], json!({"attachments": [file_id]}), "{task}");
        assert_eq!(
            step["assigned_members"][0]["email"], "min@example.com",
            "{task}"
        );

        // The task page links the attachment by name; the link downloads it as an
        // attachment that never renders as a page of the hub.
        let (_, html) = browser.get(&task_path).await;
        assert!(
            html.contains(&format!(
                r#"href="/files/{file_id}" download>notes &#60;b&#62;.html</a>"#
            )),
            "{html}"
        );
        let resp = http
            .get(format!("{}/files/{file_id}", hub.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/octet-stream");
        assert!(
            resp.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .starts_with("attachment;"),
            "{:?}",
            resp.headers()
        );
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert_eq!(
            resp.bytes().await.unwrap().as_ref(),
            b"<script>alert(1)</script>"
        );
        // Without a session: the sign-in page; another workspace's file: not found.
        let resp = http
            .get(format!("{}/files/{file_id}", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let (status, _) = browser.get(&format!("/files/{foreign_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_page_changes_the_workflow_and_the_list_filters_and_pages() {
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let http = plain_http();
    let cookie = sign_in(&hub, &http, &link_path(&hub, &team.key).await).await;
    let (task_id, _) = hub.create_task_ids(
        &team.key,
        json!({"title": "Launch", "steps": [
            {"key": "write", "title": "Write", "assignees": ["min-laptop"]},
            {"key": "review", "title": "Review", "assignees": ["min-laptop"], "depends_on": ["write"]}]}),
    )
    .await;
    let task_path = format!("/tasks/{task_id}");
    let (_, html) = get_page(&hub, &http, &cookie, &task_path).await;
    let csrf = csrf_of(&html);
    let browser = Session::new(&hub, &http, &cookie, &csrf);
    assert!(
        html.contains("Change this step") && html.contains("Add a step"),
        "{html}"
    );
    let workflow = format!("/tasks/{task_id}/workflow");

    // A change needs a reason; a refused change is shown and changes nothing.
    let (status, html) = browser
        .post(&workflow, &[("op", "skip"), ("step", "review")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("needs a reason"), "{html}");
    let (status, html) = browser
        .post(&workflow, &[("op", "launch"), ("reason", "x")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");

    // Add a step after `review`, reassign `review` to a member, then skip it.
    for form in [
        vec![
            ("op", "add"),
            ("key", "announce"),
            ("title", "Announce"),
            ("assignees", "duan-desktop"),
            ("depends_on", "review"),
            ("reason", "the launch needs a post"),
        ],
        vec![
            ("op", "assign"),
            ("step", "review"),
            ("assignees", "member:duan@example.com"),
            ("reason", "duan reviews launches"),
        ],
        vec![
            ("op", "skip"),
            ("step", "review"),
            ("reason", "reviewed in the meeting"),
        ],
    ] {
        let (status, html) = browser.post(&workflow, &form).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{form:?}: {html}");
    }
    let (_, task) = hub
        .call(
            reqwest::Method::GET,
            &format!("/v1/tasks/{task_id}"),
            &team.key,
            None,
        )
        .await;
    let step_of = |key: &str| {
        task["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["key"] == key)
            .cloned()
            .unwrap()
    };
    assert_eq!(step_of("review")["status"], "skipped", "{task}");
    assert_eq!(
        step_of("review")["assigned_members"][0]["email"],
        "duan@example.com"
    );
    assert_eq!(
        step_of("announce")["depends_on"],
        json!(["review"]),
        "{task}"
    );
    let (_, html) = browser.get(&task_path).await;
    assert!(
        html.contains("reviewed in the meeting"),
        "the timeline says why: {html}"
    );

    // The list: 30 more tasks by min, so two pages; filters run in the database.
    for n in 0..30 {
        hub.create_task(
            &team.min_key,
            crate::gateway::one_step(&format!("Chore {n:02}"), &["min-laptop"]),
        )
        .await;
    }
    let (_, first) = browser.get("/tasks").await;
    assert!(
        first.contains("Chore 29") && !first.contains(">Launch<"),
        "{first}"
    );
    assert!(first.contains(r#"rel="next""#), "{first}");
    let (_, second) = browser.get("/tasks?page=2").await;
    assert!(
        second.contains(">Launch<") && second.contains("Chore 00"),
        "{second}"
    );
    assert!(
        !second.contains("Chore 29") && !second.contains(r#"rel="next""#),
        "{second}"
    );
    let (_, mine) = browser.get("/tasks?filter=mine").await;
    assert!(
        mine.contains(">Launch<") && !mine.contains("Chore"),
        "{mine}"
    );
    let (_, waiting) = browser.get("/tasks?filter=waiting").await;
    assert!(waiting.contains("No tasks here"), "{waiting}");
    let (status, _) = browser.get("/tasks?page=999999999999").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a page far out is empty, not an error"
    );

    // Min's inbox pages its information: aurora cancels 27 of min's tasks.
    let (_, listed) = hub
        .call(
            reqwest::Method::GET,
            "/v1/tasks?limit=27",
            &team.min_key,
            None,
        )
        .await;
    for task in listed["tasks"].as_array().unwrap() {
        let (status, body) = hub
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/tasks/{}", task["id"].as_str().unwrap()),
                &team.key,
                Some(json!({"action": "cancel"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let min_cookie = sign_in(&hub, &http, &link_path(&hub, &team.min_key).await).await;
    let (_, first) = get_page(&hub, &http, &min_cookie, "/").await;
    assert_eq!(
        first.matches(r#"<li class="notification"#).count(),
        25,
        "{first}"
    );
    let marker = r#"href="/?before="#;
    let start = first.find(marker).expect("a link to older information") + marker.len() - 8;
    let older = &first[start..][..first[start..].find('"').unwrap()];
    let (_, second) = get_page(&hub, &http, &min_cookie, older).await;
    assert_eq!(
        second.matches(r#"<li class="notification"#).count(),
        2,
        "{second}"
    );
    assert!(
        second.contains(r#"rel="first""#) && !second.contains(r#"rel="next""#),
        "{second}"
    );
}

fn header_counts(html: &str) -> (u64, u64) {
    let count = |id: &str| {
        let marker = format!("id=\"{id}\"");
        html.find(&marker).map_or(0, |at| {
            let rest = &html[at..];
            let start = rest.find('>').unwrap() + 1;
            rest[start..][..rest[start..].find('<').unwrap()]
                .parse()
                .unwrap()
        })
    };
    (count("unread-action"), count("unread-info"))
}

/// aurora's notifications over the API: (id, kind, read) newest first, and the counts.
async fn api_inbox(hub: &Hub, key: &str) -> (Vec<(String, String, bool)>, Value) {
    let (status, page) = hub
        .call(reqwest::Method::GET, "/v1/me/notifications", key, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["id"].as_str().unwrap().to_string(),
                item["kind"].as_str().unwrap().to_string(),
                item["read_at"].is_i64() || item["read_at"].is_string(),
            )
        })
        .collect();
    (items, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_shows_unread_counts_and_acting_or_reading_clears_them() {
    for hub in Hub::all(
        concat!(
            module_path!(),
            "::the_inbox_shows_unread_counts_and_acting_or_reading_clears_them"
        ),
        Settings::default(),
    )
    .await
    {
        let team = Team::new(&hub.ctx.store).await;
        let aurora_key =
            accounts::create_api_key(team.store(), &team.workspace_id, "aurora@example.com", None)
                .await
                .unwrap()
                .secret;
        let duan_key =
            accounts::create_api_key(team.store(), &team.workspace_id, "duan@example.com", None)
                .await
                .unwrap()
                .secret;
        let http = plain_http();

        // For aurora: a task of hers finished (info), duan's step waiting for her
        // approval, and duan asking whether her agent min is free (both action).
        let finished = tasks::create_task(
            &team.ctx,
            &team.aurora,
            new_task("Weekly report", vec![new_step("only", &["min"], &[])]),
        )
        .await
        .unwrap();
        let only = support::step_id(&finished, "only");
        let claimed = tasks::claim_step(&team.ctx, &team.min, &only)
            .await
            .unwrap();
        submit(&team.ctx, &team.min, &only, claimed.attempt)
            .await
            .unwrap();
        let mut review = new_step("draft", &["duan-bot"], &[]);
        review.approval_level = 1;
        review.approvers = vec!["aurora@example.com".into()];
        let budget = tasks::create_task(&team.ctx, &team.duan, new_task("Budget", vec![review]))
            .await
            .unwrap();
        let draft = support::step_id(&budget, "draft");
        assert_eq!(
            team.run_step(&team.duan_bot, &draft).await,
            "awaiting_approval"
        );
        let (status, asked) = hub
            .call(
                reqwest::Method::POST,
                "/v1/agents/min/availability",
                &duan_key,
                Some(json!({"question": "Free this afternoon?"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{asked}");
        let request_id = asked["id"].as_str().unwrap().to_string();

        let cookie = sign_in(&hub, &http, &link_path(&hub, &aurora_key).await).await;
        let (status, html) = get_page(&hub, &http, &cookie, "/").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert_eq!(header_counts(&html), (2, 1), "{html}");
        assert!(html.contains(&format!("id=\"approval-{draft}\"")), "{html}");
        assert!(
            html.contains(&format!("id=\"availability-{request_id}\"")),
            "{html}"
        );
        assert!(html.contains("Free this afternoon?"), "{html}");
        assert!(html.contains("For your information"), "{html}");
        assert!(html.contains("Task finished: Weekly report"), "{html}");
        // Every page's header counts.
        let (_, tasks_html) = get_page(&hub, &http, &cookie, "/tasks").await;
        assert_eq!(header_counts(&tasks_html), (2, 1));
        let csrf = csrf_of(&html);
        let browser = Session::new(&hub, &http, &cookie, &csrf);

        let (items, _) = api_inbox(&hub, &aurora_key).await;
        let id_of = |kind: &str| {
            items
                .iter()
                .find(|(_, item_kind, _)| item_kind == kind)
                .unwrap()
                .0
                .clone()
        };
        let finished_id = id_of("task.completed");
        let approval_id = id_of("approval.requested");
        let availability_id = id_of("availability.requested");

        // Marking read needs the CSRF token; another member's notification, or no such
        // one, is not found; nothing changes on the way.
        let read_path = format!("/notifications/{finished_id}/read");
        let (status, _) = post_form(&hub, &http, &cookie, &read_path, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (duan_items, _) = api_inbox(&hub, &duan_key).await;
        let duans = duan_items.first().map(|item| item.0.clone());
        for id in duans
            .into_iter()
            .chain(["00000000-0000-4000-8000-000000000000".to_string()])
        {
            let (status, html) = browser
                .post(&format!("/notifications/{id}/read"), &[])
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
        }
        let (_, page) = api_inbox(&hub, &aurora_key).await;
        assert_eq!(page["meta"]["unread"], json!({"action": 2, "info": 1}));
        let (status, _) = browser.post(&read_path, &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (_, html) = browser.get("/").await;
        assert_eq!(header_counts(&html), (2, 0), "{html}");
        assert!(
            html.contains("Task finished: Weekly report"),
            "read stays listed"
        );

        // Answering for her agent: a bad answer is refused and loses nothing; then the
        // answer is taken once, and the item is read and no longer waits.
        let answer_path = format!("/availability/{request_id}/answer");
        let (status, html) = browser.post(&answer_path, &[("available", "maybe")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
        assert!(html.contains("`yes` or `no`"), "{html}");
        let (_, page) = api_inbox(&hub, &aurora_key).await;
        assert_eq!(page["meta"]["unread"]["action"], 2);
        let answer = [
            ("notification", availability_id.as_str()),
            ("available", "yes"),
            ("note", "after 3pm"),
        ];
        let (status, html) = browser.post(&answer_path, &answer).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        let (status, html) = browser.post(&answer_path, &answer).await;
        assert_eq!(status, StatusCode::CONFLICT, "{html}");
        let (items, page) = api_inbox(&hub, &aurora_key).await;
        assert_eq!(page["meta"]["unread"], json!({"action": 1, "info": 0}));
        assert!(items.iter().any(|item| item.0 == availability_id && item.2));
        // duan cannot answer for aurora's agent.
        let duan_cookie = sign_in(&hub, &http, &link_path(&hub, &duan_key).await).await;
        let (_, duan_html) = get_page(&hub, &http, &duan_cookie, "/").await;
        let (status, html) = post_form(
            &hub,
            &http,
            &duan_cookie,
            &answer_path,
            &[("csrf", &csrf_of(&duan_html)), ("available", "no")],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");

        // Approving from the inbox marks the item read; the header drops to nothing.
        let (_, html) = browser.get("/").await;
        assert!(!html.contains(&format!("id=\"availability-{request_id}\"")));
        let approval = &page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["id"] == approval_id.as_str())
            .unwrap()["data"];
        let attempt = approval["attempt"].to_string();
        let (status, html) = browser
            .post(
                &format!("/steps/{draft}/approve"),
                &[
                    ("notification", &approval_id),
                    ("attempt", &attempt),
                    ("digest", approval["digest"].as_str().unwrap()),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        let (items, page) = api_inbox(&hub, &aurora_key).await;
        assert_eq!(page["meta"]["unread"], json!({"action": 0, "info": 0}));
        assert!(items.iter().any(|item| item.0 == approval_id && item.2));
        let (_, html) = browser.get("/").await;
        assert_eq!(header_counts(&html), (0, 0));
        assert!(html.contains("Nothing is waiting on you."), "{html}");

        // Read all: duan's finished task and a new one for him, read in one click.
        let (_, page) = api_inbox(&hub, &duan_key).await;
        let before = page["meta"]["unread"]["info"].as_u64().unwrap();
        assert!(before >= 1, "{page}");
        let (status, _) = post_form(
            &hub,
            &http,
            &duan_cookie,
            "/notifications/read",
            &[("csrf", &csrf_of(&duan_html)), ("priority", "sometimes")],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = post_form(
            &hub,
            &http,
            &duan_cookie,
            "/notifications/read",
            &[("csrf", &csrf_of(&duan_html))],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (_, page) = api_inbox(&hub, &duan_key).await;
        assert_eq!(page["meta"]["unread"], json!({"action": 0, "info": 0}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_manage_webhooks_and_read_their_delivery_log_in_settings() {
    let settings = Settings {
        webhooks: WebhookSettings {
            allow_private: true,
            timeout_ms: 5_000,
            ..WebhookSettings::default()
        },
        ..Settings::default()
    };
    for hub in Hub::all(
        concat!(
            module_path!(),
            "::owners_manage_webhooks_and_read_their_delivery_log_in_settings"
        ),
        settings,
    )
    .await
    {
        let team = Team::new(&hub.ctx.store).await;
        let key_of = async |email: &str| {
            accounts::create_api_key(team.store(), &team.workspace_id, email, None)
                .await
                .unwrap()
                .secret
        };
        let aurora_key = key_of("aurora@example.com").await;
        let duan_key = key_of("duan@example.com").await;
        // A port nothing listens on: every attempt fails to connect.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            closed.local_addr().unwrap().port()
        );
        drop(closed);
        let http = plain_http();
        let cookie = sign_in(&hub, &http, &link_path(&hub, &aurora_key).await).await;
        let (status, html) = get_page(&hub, &http, &cookie, "/settings").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(r#"id="webhooks""#), "{html}");
        let csrf = csrf_of(&html);
        let browser = Session::new(&hub, &http, &cookie, &csrf);
        let listed = async || {
            let (status, list) = hub
                .call(reqwest::Method::GET, "/v1/webhooks", &aurora_key, None)
                .await;
            assert_eq!(status, StatusCode::OK, "{list}");
            list["webhooks"].as_array().unwrap().clone()
        };

        // A bad URL or event type is refused with its reason; nothing is created.
        for (bad_url, events, says) in [
            ("not a url", "", "url"),
            (url.as_str(), "task.created, no.such.event", "no.such.event"),
        ] {
            let (status, html) = browser
                .post(
                    "/settings/webhooks",
                    &[("url", bad_url), ("events", events)],
                )
                .await;
            assert!(status.is_client_error(), "{status} {html}");
            assert!(html.contains(says), "{html}");
        }
        assert!(listed().await.is_empty());

        // Created: the signing secret is shown on that answer only.
        let (status, html) = browser
            .post(
                "/settings/webhooks",
                &[
                    ("url", &url),
                    ("events", "task.created, approval.requested"),
                    ("description", "ops bot"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains(r#"id="new-webhook-secret">whsec_"#), "{html}");
        let webhooks = listed().await;
        assert_eq!(webhooks.len(), 1);
        assert_eq!(
            webhooks[0]["event_types"],
            json!(["task.created", "approval.requested"])
        );
        assert_eq!(webhooks[0]["description"], "ops bot");
        let webhook_id = webhooks[0]["id"].as_str().unwrap().to_string();
        let (_, html) = browser.get("/settings").await;
        assert!(!html.contains("whsec_"), "shown once");
        assert!(html.contains(&format!(r#"id="webhook-{webhook_id}""#)));

        // A member sees no webhooks and may not touch them.
        let duan_cookie = sign_in(&hub, &http, &link_path(&hub, &duan_key).await).await;
        let (_, duan_html) = get_page(&hub, &http, &duan_cookie, "/settings").await;
        assert!(!duan_html.contains(r#"id="webhooks""#));
        let duan_csrf = csrf_of(&duan_html);
        let duan_browser = Session::new(&hub, &http, &duan_cookie, &duan_csrf);
        let webhook_page = format!("/settings/webhooks/{webhook_id}");
        let (status, _) = duan_browser.get(&webhook_page).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        for path in [
            "/settings/webhooks".to_string(),
            format!("{webhook_page}/delete"),
            format!("{webhook_page}/enabled"),
        ] {
            let (status, _) = duan_browser
                .post(&path, &[("url", &url), ("enabled", "no")])
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        }
        let webhooks = listed().await;
        assert_eq!(webhooks.len(), 1);
        assert_eq!(webhooks[0]["enabled"], true);

        // Disable and enable again; a bad value changes nothing.
        let enabled_path = format!("{webhook_page}/enabled");
        for (value, expect, enabled) in [
            ("perhaps", StatusCode::BAD_REQUEST, true),
            ("no", StatusCode::SEE_OTHER, false),
            ("yes", StatusCode::SEE_OTHER, true),
        ] {
            let (status, html) = browser.post(&enabled_path, &[("enabled", value)]).await;
            assert_eq!(status, expect, "{html}");
            assert_eq!(listed().await[0]["enabled"], enabled);
        }

        // A ping fails to connect; the log shows the attempt, and a redelivery is a new
        // delivery of the log.
        let (status, _) = browser.post(&format!("{webhook_page}/ping"), &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, html) = browser.get(&webhook_page).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains(r#"<span class="badge delivery-status">failed</span>"#),
            "{html}"
        );
        assert_eq!(html.matches(r#"<tr class="attempt">"#).count(), 1, "{html}");
        assert!(
            html.contains(r#"<td class="attempt-code">–</td>"#),
            "{html}"
        );
        let (status, log) = hub
            .call(
                reqwest::Method::GET,
                &format!("/v1/webhooks/{webhook_id}/deliveries"),
                &aurora_key,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{log}");
        let ping_id = log["deliveries"][0]["id"].as_str().unwrap().to_string();
        assert!(html.contains(&format!(r#"id="delivery-{ping_id}""#)));
        let redeliver = format!("/settings/deliveries/{ping_id}/redeliver");
        let (status, _) = duan_browser.post(&redeliver, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = browser.post(&redeliver, &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (_, html) = browser.get(&webhook_page).await;
        assert_eq!(
            html.matches(r#"class="card delivery""#).count(),
            2,
            "{html}"
        );
        assert!(html.contains("redeliver"), "{html}");

        // Deleted: gone from the list, its page not found.
        let (status, _) = browser.post(&format!("{webhook_page}/delete"), &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(listed().await.is_empty());
        let (status, _) = browser.get(&webhook_page).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

/// Chromium and chromedriver from Debian's packages, when installed.
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
            })
        })
    };
    Some((
        find(&["chromium", "chromium-browser"])?,
        find(&["chromedriver"])?,
    ))
}

/// chromedriver on a free 127.0.0.1 port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(chromedriver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("open a Chromium session")
}

/// Waits until the element matching `css` has `text` in it (the page may change under
/// it, live).
async fn wait_for_text(client: &Client, css: &str, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(found) = element.text().await
            && found.contains(text)
        {
            return found;
        }
        if tokio::time::Instant::now() > deadline {
            let source = client.source().await.unwrap_or_default();
            panic!("`{css}` never showed {text:?}; the page:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page's live stream is open and the catch-up refresh it triggers has
/// had time to land, so that what the test types next is not replaced under it.
async fn settle(client: &Client) {
    wait_for_text(client, "#live-status", "live").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
}

/// Clicks the element matching `css`, finding it again when a live update replaced it
/// between finding and clicking.
async fn click(client: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let res = match client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await,
            Err(err) => Err(err),
        };
        match res {
            Ok(()) => return,
            Err(err) if tokio::time::Instant::now() > deadline => {
                panic!("cannot click `{css}`: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn screenshot(client: &Client, name: &str) {
    if std::env::var_os("AGENTHUB_SCREENSHOTS").is_none() {
        return;
    }
    let png = client.screenshot().await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A marker the page cannot lose except by a reload: set on `window`, gone after one.
async fn mark_window(client: &Client) {
    client
        .execute("window.__noReload = true; return true;", vec![])
        .await
        .unwrap();
}

async fn not_reloaded(client: &Client) -> bool {
    client
        .execute("return window.__noReload === true;", vec![])
        .await
        .unwrap()
        == Value::Bool(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teammate_follows_decides_and_starts_work_in_the_browser() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: chromium and chromedriver are not installed \
             (web::a_teammate_follows_decides_and_starts_work_in_the_browser)"
        );
        return;
    };
    let hub = Hub::start(TestDb::sqlite().await, Settings::default()).await;
    let team = team(&hub.ctx).await;
    let mut min = Agent::connect(&hub, &team.min, Codec::Json, 0).await;
    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, &chromium, profile.path()).await;

    // Sign in with a one-time link: home, nothing waiting.
    let path = link_path(&hub, &team.key).await;
    client.goto(&format!("{}{path}", hub.base)).await.unwrap();
    wait_for_text(&client, "main h1", "Waiting on you").await;
    assert_eq!(client.current_url().await.unwrap().path(), "/");

    // Create a two-step task through the form: `draft` (reviewed by aurora) then
    // `publish`, both for min-laptop, which shows as online.
    client
        .goto(&format!("{}/tasks/new", hub.base))
        .await
        .unwrap();
    let assignees = wait_for_text(&client, "#step-0-assignees", "min-laptop").await;
    assert!(
        assignees.contains("min-laptop (min@example.com) — online"),
        "{assignees}"
    );
    screenshot(&client, "new-task").await;
    let fill = async |css: &str, text: &str| {
        client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    };
    let pick = async |css: &str, value: &str| {
        client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    };
    fill("#title", "Quarterly report").await;
    // "More steps" adds a row in place: what was typed stays.
    click(&client, "#more-steps").await;
    let legend = wait_for_text(
        &client,
        "fieldset.step-row[data-index='2'] legend",
        "Step 3",
    )
    .await;
    assert_eq!(legend, "Step 3");
    let kept = client
        .execute(
            "return [document.getElementById('title').value, \
             document.querySelectorAll('[name=\"steps.2.title\"]').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(kept, json!(["Quarterly report", 1]));
    fill("#step-0-key", "draft").await;
    fill("#step-0-title", "Draft the report").await;
    pick("#step-0-assignees", "min-laptop").await;
    pick("#step-0-level", "2").await;
    pick("#step-0-approvers", "aurora@example.com").await;
    fill("#step-1-key", "publish").await;
    fill("#step-1-title", "Publish it").await;
    pick("#step-1-assignees", "min-laptop").await;
    fill("#step-1-depends", "draft").await;
    // An attachment for step one uploads as soon as it is chosen, with its progress.
    let notes = profile.path().join("figures.csv");
    std::fs::write(&notes, "quarter,revenue\nQ3,112\n").unwrap();
    fill("#step-0-files", notes.to_str().unwrap()).await;
    wait_for_text(
        &client,
        "#step-0-uploads li[data-state=done]",
        "figures.csv",
    )
    .await;
    click(&client, "#new-task button[type=submit]").await;
    wait_for_text(&client, "main h1", "Quarterly report").await;
    let task_url = client.current_url().await.unwrap();
    let task_id = task_url.path().trim_start_matches("/tasks/").to_string();
    wait_for_text(&client, "#step-draft", "ready").await;
    let link = wait_for_text(&client, "#step-draft a.file", "figures.csv").await;
    assert_eq!(link, "figures.csv");
    let downloaded = client
        .execute_async(
            "var done = arguments[arguments.length - 1];\
             fetch(document.querySelector('#step-draft a.file').href)\
             .then(function (r) { return r.text(); }).then(done);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(downloaded, json!("quarter,revenue\nQ3,112\n"));

    // The agent works on step one; the open task page follows without a reload.
    mark_window(&client).await;
    let draft_id = step_id(&hub, &team.key, &task_id, "draft").await;
    let claimed = min.claim(&draft_id).await;
    let attempt = expect_ok(&claimed, Some("claimed")).attempt.unwrap_or(1);
    expect_ok(&min.progress(&draft_id, attempt).await, None);
    wait_for_text(&client, "#step-draft", "running").await;
    expect_ok(
        &min.submit(&draft_id, attempt, json!({"text": "Revenue grew 12%."}))
            .await,
        Some("awaiting_approval"),
    );
    wait_for_text(&client, "#step-draft", "awaiting_approval").await;
    wait_for_text(&client, "#step-draft", "Revenue grew 12%.").await;
    assert!(not_reloaded(&client).await, "the page was reloaded");
    screenshot(&client, "task-awaiting-approval").await;

    // The inbox shows the result and its digest; approve it there.
    client.goto(&format!("{}/", hub.base)).await.unwrap();
    let card = wait_for_text(&client, "article.approval", "Draft the report").await;
    assert!(
        card.contains("Revenue grew 12%.") && card.contains("sha256:"),
        "{card}"
    );
    screenshot(&client, "inbox").await;
    click(&client, "article.approval form[action$='/approve'] button").await;
    wait_for_text(&client, "main", "Nothing is waiting on you.").await;

    // Step two reaches the agent; it finishes; the task is done and both boxes green.
    let publish_id = step_id(&hub, &team.key, &task_id, "publish").await;
    let claimed = min.claim(&publish_id).await;
    let attempt = expect_ok(&claimed, Some("claimed")).attempt.unwrap_or(1);
    expect_ok(
        &min.submit(
            &publish_id,
            attempt,
            json!({"url": "https://example.com/q3"}),
        )
        .await,
        Some("done"),
    );
    client.goto(task_url.as_str()).await.unwrap();
    wait_for_text(&client, "#task-status", "done").await;
    // The page may be refreshed by a late event between finding a box and reading it:
    // read all the boxes again until one reading holds them all.
    let fills = tokio::time::timeout(WAIT, async {
        loop {
            let mut fills = Vec::new();
            let mut whole = true;
            for rect in client
                .find_all(Locator::Css("#dag g.dag-step rect"))
                .await
                .unwrap()
            {
                match rect.attr("fill").await {
                    Ok(fill) => fills.push(fill.unwrap_or_default()),
                    Err(_) => whole = false,
                }
            }
            if whole && fills.len() == 2 && fills.iter().all(|fill| fill == "#1a7f37") {
                return fills;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(fills.is_ok(), "both steps are shown done on the DAG");
    let arrows = client
        .find_all(Locator::Css(
            "#dag line.dag-edge[data-from=draft][data-to=publish]",
        ))
        .await
        .unwrap();
    assert_eq!(arrows.len(), 1);
    screenshot(&client, "task-done").await;

    // A stale decision: the reviewer types a rejection while the result is approved
    // elsewhere; sending it shows why it was refused.
    let steps = hub
        .create_task(
            &team.key,
            json!({"title": "Press release", "steps": [{
                "key": "write", "title": "Write the press release", "assignees": ["min-laptop"],
                "approval_level": 2, "approvers": ["aurora@example.com"]}]}),
        )
        .await;
    let write_id = steps[0].1.clone();
    let claimed = min.claim(&write_id).await;
    let attempt = expect_ok(&claimed, Some("claimed")).attempt.unwrap_or(1);
    expect_ok(
        &min.submit(&write_id, attempt, json!({"text": "draft one"}))
            .await,
        Some("awaiting_approval"),
    );
    client.goto(&format!("{}/", hub.base)).await.unwrap();
    wait_for_text(&client, "article.approval", "Write the press release").await;
    settle(&client).await;
    client
        .find(Locator::Css(&format!("#comment-{write_id}")))
        .await
        .unwrap()
        .send_keys("Shorter, please")
        .await
        .unwrap();
    let (status, body) = hub
        .call(
            reqwest::Method::POST,
            &format!("/v1/steps/{write_id}/reject"),
            &team.key,
            Some(json!({"attempt": attempt, "comment": "rework from the API"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    click(
        &client,
        &format!("#approval-{write_id} form[action$='/reject'] button"),
    )
    .await;
    let refusal = wait_for_text(&client, "#error-message", "no longer current").await;
    assert!(refusal.contains("attempt"), "{refusal}");

    // Another workspace's task is not found; a form without its CSRF token is refused.
    let other = team_named(&hub.ctx, "globex").await;
    let (foreign_task, _) = hub
        .create_task_ids(
            &other.key,
            crate::gateway::one_step("Secret", &["min-laptop"]),
        )
        .await;
    client
        .goto(&format!("{}/tasks/{foreign_task}", hub.base))
        .await
        .unwrap();
    wait_for_text(&client, "#error-message", "not found").await;
    client.goto(task_url.as_str()).await.unwrap();
    wait_for_text(&client, "#task-status", "done").await;
    client
        .goto(&format!("{}/settings", hub.base))
        .await
        .unwrap();
    wait_for_text(&client, "main h1", "Settings").await;
    screenshot(&client, "settings").await;
    client
        .execute(
            "document.querySelectorAll('form[action=\"/settings/api-keys\"] input[name=csrf]')\
             .forEach(function (input) { input.remove(); }); return true;",
            vec![],
        )
        .await
        .unwrap();
    click(&client, "form[action='/settings/api-keys'] button").await;
    wait_for_text(&client, "#error-message", "CSRF").await;

    // A workflow change from the task page: a step not started yet is skipped, with
    // the reason in the timeline.
    let (offsite, _) = hub.create_task_ids(
        &team.key,
        json!({"title": "Offsite", "steps": [
            {"key": "book", "title": "Book the venue", "assignees": ["min-laptop"]},
            {"key": "menu", "title": "Choose the menu", "assignees": ["min-laptop"], "depends_on": ["book"]}]}),
    )
    .await;
    client
        .goto(&format!("{}/tasks/{offsite}", hub.base))
        .await
        .unwrap();
    wait_for_text(&client, "#step-menu", "pending").await;
    settle(&client).await;
    click(&client, "#step-menu details.change summary").await;
    client
        .find(Locator::Css("#why-menu"))
        .await
        .unwrap()
        .send_keys("catered by the venue")
        .await
        .unwrap();
    click(&client, "#step-menu button[value=skip]").await;
    wait_for_text(&client, "#step-menu", "skipped").await;
    wait_for_text(&client, "main table", "catered by the venue").await;

    // Agents, mine first.
    client.goto(&format!("{}/agents", hub.base)).await.unwrap();
    let first = wait_for_text(&client, "tr.agent", "spare").await;
    assert!(first.contains("mine"), "{first}");
    screenshot(&client, "agents").await;

    // At a phone's width the pages fit: no sideways scrolling.
    client.set_window_size(390, 844).await.unwrap();
    for page in [
        "/",
        "/tasks",
        &format!("/tasks/{task_id}"),
        "/tasks/new",
        "/agents",
    ] {
        client.goto(&format!("{}{page}", hub.base)).await.unwrap();
        wait_for_text(&client, "main h1", "").await;
        let fits = client
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, Value::Bool(true), "{page} scrolls sideways at 390 px");
        if page == "/tasks/new" {
            screenshot(&client, "new-task-phone").await;
        }
    }
    client.set_window_size(1280, 1000).await.unwrap();

    // Signing out ends the session; the used link does not sign in again.
    client.goto(&format!("{}/", hub.base)).await.unwrap();
    click(&client, "form[action='/logout'] button").await;
    wait_for_text(&client, "main h1", "Sign in to AgentHub").await;
    client.goto(&format!("{}{path}", hub.base)).await.unwrap();
    wait_for_text(&client, "#error-message", "already used or expired").await;
    client.goto(&format!("{}/tasks", hub.base)).await.unwrap();
    wait_for_text(&client, "main h1", "Sign in to AgentHub").await;

    client.close().await.unwrap();
}

/// The id of the step `key` of a task.
async fn step_id(hub: &Hub, key: &str, task_id: &str, step_key: &str) -> String {
    let (status, task) = hub
        .call(
            reqwest::Method::GET,
            &format!("/v1/tasks/{task_id}"),
            key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    task["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["key"] == step_key)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A step of a plan for the dashboard tests.
fn plan_step(key: &str, assignee: &str, depends_on: &[&str], minutes: u32) -> PlanStep {
    PlanStep {
        key: key.into(),
        title: format!("Step {key}"),
        description: format!("Do {key}."),
        assignees: vec![assignee.into()],
        depends_on: depends_on.iter().map(|dep| dep.to_string()).collect(),
        approval_level: 0,
        approvers: Vec::new(),
        required_capabilities: Vec::new(),
        executor: None,
        expected_inputs: None,
        expected_outputs: None,
        estimate_minutes: Some(minutes),
    }
}

/// A member's API key and a signed-in session.
async fn signed_in(hub: &Hub, team: &Team, email: &str) -> (String, Session) {
    let key = accounts::create_api_key(team.store(), &team.workspace_id, email, None)
        .await
        .unwrap()
        .secret;
    let http = plain_http();
    let cookie = sign_in(hub, &http, &link_path(hub, &key).await).await;
    let (_, html) = get_page(hub, &http, &cookie, "/").await;
    (key, Session::new(hub, &http, &cookie, &csrf_of(&html)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_creator_accepts_a_plan_or_asks_again_on_the_task_page() {
    for hub in Hub::all(
        concat!(
            module_path!(),
            "::the_creator_accepts_a_plan_or_asks_again_on_the_task_page"
        ),
        Settings::default(),
    )
    .await
    {
        let team = Team::new(&hub.ctx.store).await;
        let (_, browser) = signed_in(&hub, &team, "aurora@example.com").await;
        let (_, duan_browser) = signed_in(&hub, &team, "duan@example.com").await;
        let planned = tasks::create_task(
            &team.ctx,
            &team.aurora,
            tasks::NewTask {
                title: "Quarterly report".into(),
                description: "Min breaks down the report, then Duan reviews it".into(),
                plan: Some(tasks::PlanRequest::default()),
                ..tasks::NewTask::default()
            },
        )
        .await
        .unwrap();
        let task_id = planned.task.id.clone();
        let page_path = format!("/tasks/{task_id}");
        let (status, html) = browser.get(&page_path).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("Waiting for min to propose the steps."),
            "{html}"
        );
        assert!(!html.contains("id=\"plan-accept\""), "{html}");

        let propose = async |steps: Vec<PlanStep>| {
            let plan = tasks::get_plan(&team.ctx, &team.aurora, &task_id)
                .await
                .unwrap();
            tasks::submit_plan(
                &team.ctx,
                &team.min,
                &plan.plan.id,
                steps,
                Some("min knows it"),
            )
            .await
            .unwrap();
        };
        propose(vec![plan_step("outline", "min", &[], 45)]).await;
        let (_, html) = browser.get(&page_path).await;
        assert!(html.contains("id=\"plan-step-outline\""), "{html}");
        assert!(html.contains("45 min"), "{html}");
        assert!(html.contains("min knows it"), "{html}");
        assert!(html.contains("id=\"plan-accept\""), "{html}");
        // Only the creator (or an owner or admin) decides; duan sees the plan, no buttons,
        // and is refused when he posts anyway.
        let (_, duan_html) = duan_browser.get(&page_path).await;
        assert!(
            duan_html.contains("id=\"plan-step-outline\""),
            "{duan_html}"
        );
        assert!(!duan_html.contains("id=\"plan-accept\""), "{duan_html}");
        let accept_path = format!("/tasks/{task_id}/plan/accept");
        let (status, html) = duan_browser.post(&accept_path, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");

        // Asking again needs a comment; without one nothing changes.
        let revise_path = format!("/tasks/{task_id}/plan/revise");
        let (status, html) = browser.post(&revise_path, &[("comment", " ")]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
        let plan = tasks::get_plan(&team.ctx, &team.aurora, &task_id)
            .await
            .unwrap();
        assert_eq!(
            (plan.plan.round, plan.plan.status.as_str()),
            (1, "proposed")
        );
        let (status, html) = browser
            .post(&revise_path, &[("comment", "Duan should review it")])
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        let plan = tasks::get_plan(&team.ctx, &team.aurora, &task_id)
            .await
            .unwrap();
        assert_eq!(
            (plan.plan.round, plan.plan.status.as_str()),
            (2, "requested")
        );
        assert_eq!(plan.plan.comment.as_deref(), Some("Duan should review it"));
        let (_, html) = browser.get(&page_path).await;
        assert!(html.contains("Plan, round 2"), "{html}");
        assert!(html.contains("Duan should review it"), "{html}");
        // No proposal yet: nothing to accept.
        let (status, html) = browser.post(&accept_path, &[]).await;
        assert_eq!(status, StatusCode::CONFLICT, "{html}");

        propose(vec![
            plan_step("outline", "min", &[], 45),
            plan_step("review", "duan-bot", &["outline"], 20),
        ])
        .await;
        let (status, html) = browser.post(&accept_path, &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        let view = tasks::get_task(&team.ctx, &team.aurora, &task_id)
            .await
            .unwrap();
        assert_eq!(view.task.status, "active");
        let keys: Vec<&str> = view
            .steps
            .iter()
            .map(|step| step.step.key.as_str())
            .collect();
        assert_eq!(keys, ["outline", "review"]);
        let (_, html) = browser.get(&page_path).await;
        assert!(!html.contains("id=\"plan\""), "{html}");
        assert!(html.contains("id=\"step-review\""), "{html}");
        // The plan's estimates stay with the steps.
        assert_eq!(
            view.steps
                .iter()
                .map(|step| step.step.estimate_minutes)
                .collect::<Vec<_>>(),
            [Some(45), Some(20)]
        );
        assert!(
            html.contains("estimate <span class=\"estimate\">20 min</span>"),
            "{html}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggested_workflow_changes_are_accepted_or_refused_one_by_one() {
    for hub in Hub::all(
        concat!(
            module_path!(),
            "::suggested_workflow_changes_are_accepted_or_refused_one_by_one"
        ),
        Settings::default(),
    )
    .await
    {
        let team = Team::new(&hub.ctx.store).await;
        let (_, browser) = signed_in(&hub, &team, "aurora@example.com").await;
        let (_, duan_browser) = signed_in(&hub, &team, "duan@example.com").await;
        let task = team
            .create(new_task(
                "Report",
                vec![
                    new_step("outline", &["min"], &[]),
                    new_step("review", &["duan-bot"], &["outline"]),
                ],
            ))
            .await;
        let outline = support::step_id(&task, "outline");
        let claimed = tasks::claim_step(&team.ctx, &team.min, &outline)
            .await
            .unwrap();
        let suggestion = |op, reason: &str| agenthub_protocol::Suggestion {
            op,
            step: None,
            new_step: None,
            assignees: Vec::new(),
            reason: reason.into(),
        };
        let check = agenthub_protocol::SelfCheck {
            fits: true,
            reasons: Vec::new(),
            suggestions: vec![
                agenthub_protocol::Suggestion {
                    step: Some("review".into()),
                    ..suggestion(SuggestionOp::Skip, "the outline reviews itself")
                },
                agenthub_protocol::Suggestion {
                    new_step: Some(plan_step("figures", "min", &["outline"], 15)),
                    ..suggestion(SuggestionOp::Insert, "the figures are old")
                },
            ],
        };
        support::submit_checked(&team.ctx, &team.min, &outline, claimed.attempt, Some(check))
            .await
            .unwrap();
        let approvals = tasks::workflow_approvals(&team.ctx, &team.aurora, &task.task.id)
            .await
            .unwrap();
        let id_of = |op| {
            approvals
                .iter()
                .find(|approval| approval.suggestion.op == op)
                .unwrap()
                .row
                .id
                .clone()
        };
        let (skip_id, insert_id) = (id_of(SuggestionOp::Skip), id_of(SuggestionOp::Insert));

        // Both wait in the creator's inbox and on the task's page, with their reasons.
        let (_, html) = browser.get("/").await;
        for id in [&skip_id, &insert_id] {
            assert!(html.contains(&format!("id=\"suggestion-{id}\"")), "{html}");
        }
        assert!(html.contains("min suggests to skip `review`"), "{html}");
        assert!(html.contains("the figures are old"), "{html}");
        let page_path = format!("/tasks/{}", task.task.id);
        let (_, html) = browser.get(&page_path).await;
        assert!(
            html.contains(&format!("action=\"/workflow-approvals/{skip_id}/reject\"")),
            "{html}"
        );
        // Duan sees them, cannot decide them.
        let (_, duan_html) = duan_browser.get(&page_path).await;
        assert!(duan_html.contains(&format!("id=\"suggestion-{skip_id}\"")));
        assert!(!duan_html.contains(&format!("/workflow-approvals/{skip_id}/approve")));
        let (status, html) = duan_browser
            .post(&format!("/workflow-approvals/{skip_id}/approve"), &[])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");

        // Refused: nothing changes. Accepted: the step is added.
        let (status, html) = browser
            .post(
                &format!("/workflow-approvals/{skip_id}/reject"),
                &[("comment", "duan reviews everything"), ("back", &page_path)],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        let (status, html) = browser
            .post(
                &format!("/workflow-approvals/{insert_id}/approve"),
                &[("back", &page_path)],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        // A decided suggestion is not decided again.
        let (status, html) = browser
            .post(&format!("/workflow-approvals/{skip_id}/approve"), &[])
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{html}");
        let view = team.task(&task.task.id).await;
        let states: Vec<(&str, &str)> = view
            .steps
            .iter()
            .map(|step| (step.step.key.as_str(), step.step.status.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("outline", "done"),
                ("review", "ready"),
                ("figures", "ready")
            ]
        );
        let (_, html) = browser.get(&page_path).await;
        assert!(
            html.contains(&format!(
                "id=\"suggestion-{skip_id}\" data-status=\"rejected\""
            )),
            "{html}"
        );
        assert!(
            html.contains(&format!(
                "id=\"suggestion-{insert_id}\" data-status=\"approved\""
            )),
            "{html}"
        );
        let (_, html) = browser.get("/").await;
        assert!(!html.contains("id=\"suggestion-"), "{html}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_answer_a_meeting_with_intervals_and_the_assignee_confirms_it() {
    for hub in Hub::all(
        concat!(
            module_path!(),
            "::participants_answer_a_meeting_with_intervals_and_the_assignee_confirms_it"
        ),
        Settings::default(),
    )
    .await
    {
        let team = Team::new(&hub.ctx.store).await;
        let (_, browser) = signed_in(&hub, &team, "aurora@example.com").await;
        let (_, duan_browser) = signed_in(&hub, &team, "duan@example.com").await;
        // A Monday at least a week ahead, 00:00 UTC.
        let day_ms = 24 * 60 * 60 * 1000;
        let now = agenthub::store::now_ms();
        let mut day = now - now.rem_euclid(day_ms) + 7 * day_ms;
        while (day / day_ms + 3).rem_euclid(7) != 0 {
            day += day_ms;
        }
        let date = &tasks::meeting::utc_text(day)[..10];
        let person = |email: &str, name: Option<&str>| tasks::NewParticipant {
            email: email.into(),
            name: name.map(str::to_string),
        };
        let task = team
            .create(new_task(
                "Template review",
                vec![tasks::NewStep {
                    meeting: Some(tasks::NewMeeting {
                        participants: vec![
                            person("aurora@example.com", None),
                            person("duan@example.com", None),
                            person("pat@outside.example", Some("Pat Guest")),
                        ],
                        duration_minutes: 60,
                        window: Some((day, day + day_ms)),
                    }),
                    ..new_step("meet", &["min"], &[])
                }],
            ))
            .await;
        let meet = support::step_id(&task, "meet");
        let requests: Vec<String> = tasks::get_step(&team.ctx, &team.aurora, &meet)
            .await
            .unwrap()
            .meeting
            .unwrap()
            .participants
            .iter()
            .map(|participant| participant.row.id.clone())
            .collect();

        // Aurora is asked for herself (through her agent) and for the guest: intervals
        // forms, not the yes/no question of an agent's availability.
        let (_, html) = browser.get("/").await;
        for id in [&requests[0], &requests[2]] {
            assert!(
                html.contains(&format!("id=\"meeting-availability-{id}\"")),
                "{html}"
            );
        }
        assert!(!html.contains("id=\"availability-"), "{html}");
        assert!(html.contains("When is pat@outside.example free?"), "{html}");

        // Bad answers are refused and record nothing.
        let mine = format!("/meetings/{}/availability", requests[0]);
        let from = format!("{date}T09:00");
        let to = format!("{date}T17:00");
        for (form, needle) in [
            (
                vec![
                    ("from", from.as_str()),
                    ("to", to.as_str()),
                    ("offset", "Tokyo"),
                ],
                "not a UTC offset",
            ),
            (
                vec![("from", from.as_str()), ("to", ""), ("offset", "+09:00")],
                "row 1",
            ),
            (
                vec![("from", ""), ("to", ""), ("offset", "+09:00")],
                "at least one",
            ),
            (
                vec![
                    ("from", to.as_str()),
                    ("to", from.as_str()),
                    ("offset", "+09:00"),
                ],
                "ends before it starts",
            ),
        ] {
            let (status, html) = browser.post(&mine, &form).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
            assert!(html.contains(needle), "{needle}: {html}");
        }
        // Duan does not answer for aurora.
        let (status, html) = duan_browser
            .post(&mine, &[("from", &from), ("to", &to)])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        let view = tasks::get_step(&team.ctx, &team.aurora, &meet)
            .await
            .unwrap()
            .meeting
            .unwrap();
        assert!(
            view.participants
                .iter()
                .all(|participant| participant.row.responded_at.is_none())
        );

        // Aurora: 09:00-17:00 in Tokyo (00:00-08:00 UTC), one row of three; duan in UTC
        // with offsets of his own; the guest's free time through aurora.
        let (status, html) = browser
            .post(
                &mine,
                &[
                    ("from", ""),
                    ("to", ""),
                    ("from", &from),
                    ("to", &to),
                    ("offset", "+09:00"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        let (_, duan_html) = duan_browser.get("/").await;
        assert!(
            duan_html.contains(&format!("id=\"meeting-availability-{}\"", requests[1])),
            "{duan_html}"
        );
        for (session, request_id, from, to) in [
            (&duan_browser, &requests[1], "T03:00:00Z", "T12:00:00Z"),
            (&browser, &requests[2], "T05:30", "T07:00"),
        ] {
            let path = format!("/meetings/{request_id}/availability");
            let (from, to) = (format!("{date}{from}"), format!("{date}{to}"));
            let (status, html) = session.post(&path, &[("from", &from), ("to", &to)]).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        }
        let (_, html) = browser.get("/").await;
        assert!(!html.contains("id=\"meeting-availability-"), "{html}");

        // The task page shows every answer and the earliest common slot; only the
        // step's assignee (aurora, through min) confirms.
        let page_path = format!("/tasks/{}", task.task.id);
        let (_, html) = browser.get(&page_path).await;
        assert!(html.contains("data-meeting-status=\"proposed\""), "{html}");
        assert!(
            html.contains(&format!("{date}T09:00:00+09:00 – {date}T17:00:00+09:00")),
            "{html}"
        );
        assert!(
            html.contains(&format!("{date}T03:00:00Z – {date}T12:00:00Z")),
            "{html}"
        );
        assert!(
            html.contains("Pat Guest &#60;pat@outside.example&#62;"),
            "{html}"
        );
        assert!(
            html.contains(&format!("{date} 05:30 UTC – {date} 06:30 UTC")),
            "{html}"
        );
        let confirm_path = format!("/steps/{meet}/meeting/confirm");
        assert!(
            html.contains(&format!("action=\"{confirm_path}\"")),
            "{html}"
        );
        let (_, duan_html) = duan_browser.get(&page_path).await;
        assert!(!duan_html.contains(&confirm_path), "{duan_html}");
        let (status, html) = duan_browser.post(&confirm_path, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        let (status, html) = browser.post(&confirm_path, &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        assert_eq!(team.step(&meet).await.status, "done");
        let (_, html) = browser.get(&page_path).await;
        assert!(html.contains("data-meeting-status=\"scheduled\""), "{html}");
        assert!(html.contains("Invitation (.ics)"), "{html}");
        assert!(
            !html.contains(&format!("action=\"{confirm_path}\"")),
            "{html}"
        );
    }
}
