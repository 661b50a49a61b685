//! The guard against server-side request forgery: webhook targets (and the outside A2A
//! agents of delegated steps) may not reach the hub's own network (loopback, private,
//! link-local, unique-local, CGNAT, multicast, …) unless the operator allows it
//! (`--webhook-allow-private`, `--a2a-allow-private`).
//!
//! The check runs after DNS resolution, on every attempt: [`GuardedResolver`] is the HTTP
//! client's resolver and drops every address the guard refuses, so a name that resolves
//! (or later re-resolves) to an inside address cannot be reached; a URL naming an address
//! itself is checked by [`check_url`] before each attempt. Redirects are never followed
//! and proxies are not used, so the checked address is the one connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How a [`GuardedClient`] calls.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpec {
    pub allow_private: bool,
    /// The option that lifts the guard, named in refusals.
    pub option: &'static str,
    /// The deadline of one call, in milliseconds.
    pub timeout_ms: u64,
    pub user_agent: &'static str,
    /// What the client is for, in the error when it cannot be built.
    pub what: &'static str,
}

/// An HTTP client for addresses people give (webhook targets, outside A2A agents), built
/// on first use: rustls, no proxy, no redirects, [`GuardedResolver`] as its resolver, a
/// deadline per call.
#[derive(Debug, Default)]
pub struct GuardedClient {
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl GuardedClient {
    /// The client, built with `spec` on the first call (later calls reuse it).
    pub fn get(&self, spec: ClientSpec) -> Result<&reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .dns_resolver(GuardedResolver {
                        allow_private: spec.allow_private,
                        option: spec.option,
                    })
                    .timeout(Duration::from_millis(spec.timeout_ms.max(1)))
                    .user_agent(spec.user_agent)
                    .build()
                    .map_err(|err| format!("cannot build the {} client: {err}", spec.what))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Why an address is refused, or `None` when it is a public unicast address.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refusal_v4(v4).map(|_| "an IPv4-mapped address of the hub's network");
            }
            refusal_v6(v6)
        }
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [first, second, ..] = ip.octets();
    let reason = if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_private() {
        "a private address"
    } else if ip.is_link_local() {
        "a link-local address"
    } else if ip.is_unspecified() || first == 0 {
        "an unspecified address"
    } else if ip.is_multicast() || ip.is_broadcast() || first >= 240 {
        "a multicast, broadcast or reserved address"
    } else if first == 100 && (64..128).contains(&second) {
        "a shared (CGNAT) address"
    } else if first == 192 && second == 0 && ip.octets()[2] == 0 {
        "an IETF protocol assignment address"
    } else if ip.is_documentation() || (first == 198 && (second == 18 || second == 19)) {
        "a documentation or benchmarking address"
    } else {
        return None;
    };
    Some(reason)
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    let reason = if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() {
        "an unspecified address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if segments[0] & 0xfe00 == 0xfc00 {
        "a unique-local address"
    } else if segments[0] & 0xffc0 == 0xfe80 {
        "a link-local address"
    } else if segments[0] & 0xffc0 == 0xfec0 {
        "a site-local address"
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        "a documentation address"
    } else if segments[..6] == [0, 0, 0, 0, 0, 0] {
        "an IPv4-compatible address"
    } else if segments[0] == 0x0064 && segments[1] == 0xff9b {
        "a NAT64 address"
    } else if segments[0] == 0x2002 {
        "a 6to4 address"
    } else {
        return None;
    };
    Some(reason)
}

/// Refuses a URL that names a refused address itself (`http://127.0.0.1/…`,
/// `http://[::1]/…`); names are checked after resolution by [`GuardedResolver`].
pub fn check_url(url: &reqwest::Url, allow_private: bool) -> Result<(), String> {
    check_url_for(url, allow_private, WEBHOOK_OPTION)
}

/// The option that lifts the guard for webhooks.
pub const WEBHOOK_OPTION: &str = "--webhook-allow-private";

/// [`check_url`] for another client, whose refusals name `option` as what lifts them.
pub fn check_url_for(
    url: &reqwest::Url,
    allow_private: bool,
    option: &'static str,
) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    let Ok(ip) = host.parse::<IpAddr>() else {
        return Ok(());
    };
    match refusal(ip) {
        Some(reason) => Err(refused_message(ip, reason, option)),
        None => Ok(()),
    }
}

fn refused_message(ip: IpAddr, reason: &str, option: &str) -> String {
    format!(
        "the target address {ip} is {reason}; only public addresses are reached unless \
         the hub runs with {option}"
    )
}

/// The webhook client's resolver: the system's resolution, then every refused address
/// dropped; a name left with none fails the attempt, saying why.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
    /// The option that lifts the guard, named in refusals.
    pub option: &'static str,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let option = self.option;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow_private {
                let addrs: Addrs = Box::new(resolved.into_iter());
                return Ok(addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match refusal(addr.ip()) {
                    Some(reason) => {
                        refused.get_or_insert((addr.ip(), reason));
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let message = match refused {
                    Some((ip, reason)) => {
                        format!("{host} resolves to {}", refused_message(ip, reason, option))
                    }
                    None => format!("{host} resolves to no address"),
                };
                return Err(message.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}
