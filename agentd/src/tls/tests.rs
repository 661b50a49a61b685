//! Unit tests of `tls`.

use super::*;

#[test]
fn https_becomes_wss() {
    let urls = HubUrls::parse("https://hub.example.com", false).unwrap();
    assert_eq!(
        urls.websocket.as_str(),
        "wss://hub.example.com/v1/agent/connect"
    );
    assert_eq!(
        urls.route("/v1/me").as_str(),
        "https://hub.example.com/v1/me"
    );
}

#[test]
fn a_base_path_is_kept() {
    let urls = HubUrls::parse("https://example.com/hub", false).unwrap();
    assert_eq!(
        urls.websocket.as_str(),
        "wss://example.com/hub/v1/agent/connect"
    );
}

#[test]
fn plain_http_only_on_loopback_unless_insecure() {
    for loopback in [
        "http://127.0.0.1:7700",
        "http://localhost:1",
        "http://[::1]:7700",
    ] {
        let urls = HubUrls::parse(loopback, false).unwrap();
        assert_eq!(urls.websocket.scheme(), "ws", "{loopback}");
    }
    let err = HubUrls::parse("http://hub.example.com", false).unwrap_err();
    assert!(err.to_string().contains("--insecure"), "{err}");
    assert!(HubUrls::parse("http://hub.example.com", true).is_ok());
    assert!(HubUrls::parse("ftp://hub.example.com", true).is_err());
}

#[test]
fn a_missing_ca_file_is_a_config_error() {
    let err = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}
