//! The hub's URLs and TLS: `https://` hubs verified against the system roots (plus an
//! optional extra CA), `http://` allowed only on loopback unless `--insecure`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use reqwest::Url;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{Error, Result};

/// The hub's base URL and the WebSocket URL derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrls {
    /// e.g. `https://hub.example.com/`
    pub base: Url,
    /// e.g. `wss://hub.example.com/v1/agent/connect`
    pub websocket: Url,
}

impl HubUrls {
    /// Checks a base URL and derives the WebSocket URL.
    pub fn parse(text: &str, insecure: bool) -> Result<HubUrls> {
        let mut base = Url::parse(text.trim()).map_err(|err| {
            Error::config(format!(
                "`{text}` is not a hub URL ({err}); expected e.g. https://hub.example.com"
            ))
        })?;
        let ws_scheme = match base.scheme() {
            "https" => "wss",
            "http" if insecure || is_loopback(&base) => "ws",
            "http" => {
                return Err(Error::config(format!(
                    "refusing plain http:// to {text}: only a hub on a loopback address may be reached without TLS; use https:// or pass --insecure"
                )));
            }
            other => {
                return Err(Error::config(format!(
                    "the hub URL must start with https:// (or http:// on loopback), not {other}://"
                )));
            }
        };
        if base.host_str().is_none() {
            return Err(Error::config(format!("the hub URL `{text}` has no host")));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut websocket = base
            .join("v1/agent/connect")
            .expect("a relative path joins onto a base URL");
        websocket
            .set_scheme(ws_scheme)
            .expect("ws and wss are valid schemes for a host URL");
        Ok(HubUrls { base, websocket })
    }

    /// A REST route under the base URL, e.g. `v1/me`.
    pub fn route(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("a relative path joins onto a base URL")
    }

    /// The base URL as the user wrote it, without the trailing slash.
    pub fn display(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host == "localhost" {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A rustls client configuration: the platform's roots plus `ca_cert` when given.
pub fn client_config(ca_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let extra_roots = match ca_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|err| {
                    Error::config(format!(
                        "cannot read the CA certificate {}: {err}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
            certs
        }
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|err| Error::config(format!("cannot load the system's TLS roots: {err}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::other(format!("TLS setup failed: {err}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
