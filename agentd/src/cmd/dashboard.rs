//! `agentd dashboard`: asks the hub for a one-time sign-in link for this teammate
//! (`POST /v1/me/login-link`) and opens it in the browser.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::cmd::Ctx;
use crate::error::Result;

/// Open the hub's dashboard in the browser, signed in (a one-time link)
#[derive(Debug, Args)]
pub struct Dashboard {
    /// Print the link instead of opening a browser
    #[arg(long)]
    pub print: bool,
}

#[derive(Debug, Deserialize, Serialize)]
struct LoginLink {
    path: String,
    email: String,
    expires_at: String,
    /// The link at this machine's hub URL.
    #[serde(default)]
    url: String,
}

impl Dashboard {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let hub = ctx.hub()?;
        let mut link: LoginLink = hub.post("v1/me/login-link", &serde_json::json!({})).await?;
        // The hub is reached at the URL this machine knows, which may differ from its
        // public URL (a tunnel, a container).
        link.url = hub
            .urls()
            .base
            .join(link.path.trim_start_matches('/'))
            .map(String::from)
            .unwrap_or(link.url);
        let opened = !self.print && open_browser(&link.url);
        ctx.print(&link, || {
            if opened {
                format!(
                    "opened the dashboard as {} (the link works once, until {})",
                    link.email, link.expires_at
                )
            } else {
                format!(
                    "{}\n(open this link to sign in as {}; it works once, until {})",
                    link.url, link.email, link.expires_at
                )
            }
        });
        Ok(())
    }
}

/// Starts the platform's opener (`open` on macOS, `xdg-open` elsewhere); false when it
/// is missing or fails, so that the caller prints the link instead.
fn open_browser(url: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
