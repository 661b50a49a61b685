//! The hub as an A2A 1.0 client: fetching an outside agent's Agent Card and calling its
//! JSON-RPC endpoint (`SendMessage`, `GetTask`, `CancelTask`) with `A2A-Version: 1.0`.
//! Every failure is a sentence that names the URL and what was wrong with the answer,
//! ready to be a step's failure reason.

use serde_json::{Value, json};

use crate::a2a::PROTOCOL_VERSION;
use crate::webhooks::guard;

/// The option that lets A2A calls reach non-public addresses.
const ALLOW_PRIVATE_OPTION: &str = "--a2a-allow-private";

/// Timings and limits of steps delegated to outside A2A agents.
#[derive(Debug, Clone)]
pub struct A2aClientSettings {
    /// Whether cards and endpoints on loopback, private and link-local addresses may be
    /// called (agents of the team's own network).
    pub allow_private: bool,
    /// The first wait between two `GetTask` polls of a remote task, in milliseconds; it
    /// doubles while nothing changes, up to `max_poll_ms`.
    pub poll_ms: u64,
    pub max_poll_ms: u64,
    /// The deadline of one HTTP call, in milliseconds.
    pub timeout_ms: u64,
    /// `GetTask` failures in a row after which the step fails.
    pub max_errors: u32,
}

impl A2aClientSettings {
    /// How long a hub holds a call it follows: longer than one round (two calls and the
    /// longest wait). A hub that dies leaves its calls to another after this long.
    pub fn hold_ms(&self) -> u64 {
        3 * self.timeout_ms + 2 * self.max_poll_ms
    }

    /// The longest time between two looks at a call: the longest wait, one call and a
    /// second.
    pub fn round_ms(&self) -> u64 {
        self.max_poll_ms + self.timeout_ms + 1_000
    }

    /// The least lease a followed step keeps: a hold and two rounds, so that when its
    /// hub dies the hold runs out, and another hub takes the call over, before the lease
    /// does.
    pub fn lease_floor_ms(&self) -> u64 {
        self.hold_ms() + 2 * self.round_ms()
    }
}

impl Default for A2aClientSettings {
    fn default() -> Self {
        A2aClientSettings {
            allow_private: false,
            poll_ms: 1_000,
            max_poll_ms: 5_000,
            timeout_ms: 15_000,
            max_errors: 5,
        }
    }
}

/// The HTTP client of A2A calls: the SSRF guard's client ([`guard::GuardedClient`])
/// with the call deadline.
#[derive(Debug, Default)]
pub struct Caller {
    client: guard::GuardedClient,
}

impl Caller {
    fn client(&self, settings: &A2aClientSettings) -> Result<&reqwest::Client, String> {
        self.client.get(guard::ClientSpec {
            allow_private: settings.allow_private,
            option: ALLOW_PRIVATE_OPTION,
            timeout_ms: settings.timeout_ms,
            user_agent: concat!("AgentHub-A2A/", env!("CARGO_PKG_VERSION")),
            what: "A2A",
        })
    }

    /// Fetches the Agent Card at `card_url` and returns the URL of its JSON-RPC
    /// interface.
    pub async fn endpoint(
        &self,
        settings: &A2aClientSettings,
        card_url: &str,
    ) -> Result<String, String> {
        let client = self.client(settings)?;
        let url = checked_url(card_url, settings)?;
        let resp = client
            .get(url)
            .header("A2A-Version", PROTOCOL_VERSION)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|err| format!("cannot fetch the Agent Card at {card_url}: {}", cause(&err)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!(
                "the Agent Card at {card_url} answered HTTP {}",
                status.as_u16()
            ));
        }
        let card: Value = resp
            .json()
            .await
            .map_err(|err| format!("the Agent Card at {card_url} is not JSON: {}", cause(&err)))?;
        jsonrpc_interface(&card).ok_or_else(|| {
            format!(
                "the Agent Card at {card_url} names no JSON-RPC interface \
                 (supportedInterfaces with protocolBinding JSONRPC and an http(s) url)"
            )
        })
    }

    /// Calls `method` at `endpoint`; its `result`, or why there is none.
    pub async fn call(
        &self,
        settings: &A2aClientSettings,
        endpoint: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let client = self.client(settings)?;
        let url = checked_url(endpoint, settings)?;
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = client
            .post(url)
            .header("A2A-Version", PROTOCOL_VERSION)
            .json(&body)
            .send()
            .await
            .map_err(|err| format!("{method} to {endpoint} failed: {}", cause(&err)))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|err| format!("{method} to {endpoint} failed: {}", cause(&err)))?;
        let answer: Option<Value> = serde_json::from_str(&text).ok();
        if let Some(error) = answer.as_ref().and_then(|answer| answer.get("error")) {
            return Err(format!(
                "{method} to {endpoint} answered error {}: {}",
                error.get("code").unwrap_or(&Value::Null),
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
            ));
        }
        if !status.is_success() {
            return Err(format!(
                "{method} to {endpoint} answered HTTP {}",
                status.as_u16()
            ));
        }
        match answer.and_then(|mut answer| answer.get_mut("result").map(Value::take)) {
            Some(result) if result.is_object() => Ok(result),
            _ => Err(format!(
                "{method} to {endpoint} answered no JSON-RPC result object: {}",
                excerpt(&text)
            )),
        }
    }
}

/// The URL of the card's first JSON-RPC interface.
fn jsonrpc_interface(card: &Value) -> Option<String> {
    card.get("supportedInterfaces")?
        .as_array()?
        .iter()
        .filter(|interface| {
            interface.get("protocolBinding").and_then(Value::as_str) == Some("JSONRPC")
        })
        .filter_map(|interface| interface.get("url").and_then(Value::as_str))
        .find(|url| is_http_url(url))
        .map(str::to_string)
}

/// Whether `text` is an absolute `http` or `https` URL with a host.
pub fn is_http_url(text: &str) -> bool {
    reqwest::Url::parse(text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty())
    })
}

fn checked_url(text: &str, settings: &A2aClientSettings) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("`{text}` is not a URL: {err}"))?;
    guard::check_url_for(&url, settings.allow_private, ALLOW_PRIVATE_OPTION)?;
    Ok(url)
}

/// The innermost cause of a reqwest error (the resolver's or the socket's words).
fn cause(err: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(next) = source.source() {
        source = next;
    }
    if err.is_timeout() {
        return "timed out".into();
    }
    source.to_string()
}

fn excerpt(text: &str) -> String {
    let (excerpt, _) = crate::content::excerpt(text, 200);
    excerpt.to_string()
}
