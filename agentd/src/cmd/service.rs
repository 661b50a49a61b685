//! `agentd service install|uninstall|status`: run agentd in the background as a systemd
//! user unit (Linux) or a launchd agent (macOS).

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::cmd::Ctx;
use crate::error::{Error, Result};

/// The systemd unit name.
pub const UNIT_NAME: &str = "agentd.service";
/// The launchd label.
pub const LAUNCHD_LABEL: &str = "dev.agenthub.agentd";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the service file, enable it and start it
    Install(Install),
    /// Stop and disable the service and remove its file
    Uninstall,
    /// Show whether the service is installed and running
    Status,
}

#[derive(Debug, Args)]
pub struct Install {
    /// Only write the service file; do not enable or start it
    #[arg(long)]
    pub no_start: bool,
}

/// The systemd user unit for `exe`.
pub fn systemd_unit(exe: &Path, config: Option<&Path>) -> String {
    let mut exec = format!("{} run", quote(exe));
    if let Some(config) = config {
        exec.push_str(&format!(" --config {}", quote(config)));
    }
    format!(
        "[Unit]\n\
         Description=AgentHub agent daemon (agentd)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         # A revoked token or another instance of this agent: do not restart.\n\
         RestartPreventExitStatus=3 4\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    )
}

/// The launchd agent plist for `exe`.
pub fn launchd_plist(exe: &Path, config: Option<&Path>, log: &Path) -> String {
    let mut args = vec![exe.display().to_string(), "run".to_string()];
    if let Some(config) = config {
        args.push("--config".into());
        args.push(config.display().to_string());
    }
    let args: String = args
        .iter()
        .map(|arg| format!("    <string>{}</string>\n", xml_escape(arg)))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <plist version=\"1.0\">\n<dict>\n\
         \x20 <key>Label</key><string>{LAUNCHD_LABEL}</string>\n\
         \x20 <key>ProgramArguments</key>\n  <array>\n{args}  </array>\n\
         \x20 <key>RunAtLoad</key><true/>\n\
         \x20 <key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>\n\
         \x20 <key>StandardErrorPath</key><string>{}</string>\n\
         </dict>\n</plist>\n",
        xml_escape(&log.display().to_string())
    )
}

fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains([' ', '"', '\\']) {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Where the service file goes.
pub fn service_file() -> Result<PathBuf> {
    let base = directories::BaseDirs::new()
        .ok_or_else(|| Error::config("cannot find the home directory; set HOME"))?;
    if cfg!(target_os = "macos") {
        return Ok(base
            .home_dir()
            .join("Library/LaunchAgents")
            .join(format!("{LAUNCHD_LABEL}.plist")));
    }
    Ok(base.config_dir().join("systemd/user").join(UNIT_NAME))
}

fn run_tool(program: &str, args: &[&str]) -> Result<String> {
    let output = Process::new(program)
        .args(args)
        .output()
        .map_err(|err| Error::other(format!("cannot run {program}: {err}")))?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(Error::other(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            if stderr.is_empty() { &text } else { &stderr }
        )));
    }
    Ok(text)
}

impl Command {
    pub async fn run(self, ctx: Ctx) -> Result<()> {
        let file = service_file()?;
        let config = ctx.loaded.paths.config_file.clone();
        let config_arg = config.exists().then_some(config.as_path());
        match self {
            Command::Install(install) => {
                let exe = std::env::current_exe()
                    .map_err(|err| Error::other(format!("cannot find agentd's own path: {err}")))?;
                let text = if cfg!(target_os = "macos") {
                    launchd_plist(
                        &exe,
                        config_arg,
                        &ctx.loaded.paths.state_dir.join("agentd.log"),
                    )
                } else {
                    systemd_unit(&exe, config_arg)
                };
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&file, text)?;
                let started = if install.no_start {
                    false
                } else if cfg!(target_os = "macos") {
                    run_tool("launchctl", &["load", "-w", &file.display().to_string()])?;
                    true
                } else {
                    run_tool("systemctl", &["--user", "daemon-reload"])?;
                    run_tool("systemctl", &["--user", "enable", "--now", UNIT_NAME])?;
                    true
                };
                ctx.print(&json!({"file": file, "started": started}), || {
                    if started {
                        format!("installed {} and started it", file.display())
                    } else {
                        format!("wrote {}", file.display())
                    }
                });
            }
            Command::Uninstall => {
                if cfg!(target_os = "macos") {
                    let _ = run_tool("launchctl", &["unload", "-w", &file.display().to_string()]);
                } else {
                    let _ = run_tool("systemctl", &["--user", "disable", "--now", UNIT_NAME]);
                }
                let removed = std::fs::remove_file(&file).is_ok();
                if !cfg!(target_os = "macos") {
                    let _ = run_tool("systemctl", &["--user", "daemon-reload"]);
                }
                ctx.print(&json!({"file": file, "removed": removed}), || {
                    if removed {
                        format!("removed {}", file.display())
                    } else {
                        "the service was not installed".to_string()
                    }
                });
            }
            Command::Status => {
                let installed = file.exists();
                let active = if cfg!(target_os = "macos") {
                    run_tool("launchctl", &["list", LAUNCHD_LABEL]).is_ok()
                } else {
                    run_tool("systemctl", &["--user", "is-active", UNIT_NAME])
                        .is_ok_and(|state| state == "active")
                };
                ctx.print(
                    &json!({"file": file, "installed": installed, "running": active}),
                    || {
                        format!(
                            "service file: {} ({})\nrunning: {}",
                            file.display(),
                            if installed {
                                "installed"
                            } else {
                                "not installed"
                            },
                            if active { "yes" } else { "no" }
                        )
                    },
                );
            }
        }
        Ok(())
    }
}
