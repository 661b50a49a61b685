//! Configuration: `config.toml` in the platform config dir (or `--config`), then the
//! `AGENTD_*` environment, then flags. Also the directories agentd keeps its files in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::executor::Kind;

/// Flags every command accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Configuration file [default: config.toml in the platform config dir]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Hub base URL, overriding the stored one (e.g. https://hub.example.com)
    #[arg(long, global = true, env = "AGENTD_HUB", value_name = "URL")]
    pub hub: Option<String>,
    /// Extra PEM root certificate(s) to trust for a self-hosted hub
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Allow a plain `http://` hub that is not on a loopback address
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Print machine-readable JSON
    #[arg(long, global = true)]
    pub json: bool,
    /// Log lines on stderr: text (colours only on a terminal) or json, one object a line
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "AGENTD_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only when stderr is a terminal and NO_COLOR is unset.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Where agentd keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The configuration file.
    pub config_file: PathBuf,
    /// The directory holding `config.toml` and the credentials file fallback.
    pub config_dir: PathBuf,
    /// Step work dirs.
    pub data_dir: PathBuf,
    /// Last processed seq, the journal, the control socket.
    pub state_dir: PathBuf,
}

impl Paths {
    /// The platform directories (XDG on Linux), with `config_file` overriding the file.
    pub fn discover(config_file: Option<&Path>) -> Result<Paths> {
        let dirs = directories::ProjectDirs::from("", "", "agentd").ok_or_else(|| {
            Error::config("cannot find a home directory for agentd's files; set HOME")
        })?;
        let config_dir = dirs.config_dir().to_path_buf();
        let state_dir = dirs
            .state_dir()
            .unwrap_or_else(|| dirs.data_local_dir())
            .to_path_buf();
        Ok(Paths {
            config_file: config_file
                .map(Path::to_path_buf)
                .unwrap_or_else(|| config_dir.join("config.toml")),
            config_dir,
            data_dir: dirs.data_local_dir().to_path_buf(),
            state_dir,
        })
    }

    /// The per-step work dir root.
    pub fn work_root(&self) -> PathBuf {
        self.data_dir.join("work")
    }

    /// The credentials file used where no keyring is reachable.
    pub fn credentials_file(&self) -> PathBuf {
        self.config_dir.join("credentials.toml")
    }

    /// The local control socket of a running `agentd run`.
    pub fn control_socket(&self) -> PathBuf {
        self.state_dir.join("agentd.sock")
    }
}

/// How a tool call of the `claude` executor is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolPolicy {
    /// Run it.
    Auto,
    /// Ask the human first (the step blocks at the hub until answered).
    Ask,
    /// Refuse it; the model is told.
    Deny,
}

/// Where secrets are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStoreKind {
    /// The OS keyring, else a file readable only by the user.
    #[default]
    Auto,
    /// Only the OS keyring.
    Keyring,
    /// Only the credentials file (mode 0600).
    File,
}

/// The contents of `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The hub's base URL, written by `agentd login`.
    pub hub: Option<String>,
    /// Extra PEM root certificate(s) for a self-hosted hub.
    pub ca_cert: Option<PathBuf>,
    /// Allow `http://` to a hub that is not on a loopback address.
    pub insecure: bool,
    /// Steps run at once.
    pub max_concurrency: u32,
    /// Capability labels sent in `hello`.
    pub capabilities: Vec<String>,
    /// The executor for steps that name none when no Claude key is available:
    /// `claude`, `shell`, `manual`, `external`. With a key such steps run with `claude`;
    /// without a key and without this setting too, and then fail saying how to set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_executor: Option<String>,
    /// A step running longer than this is failed.
    pub step_timeout_secs: u64,
    /// A stopped step (cancelled, revoked, out of time) gets this long between SIGTERM
    /// and SIGKILL to its processes.
    pub cancel_grace_secs: u64,
    /// The files of the earlier steps a step reads are downloaded into its work dir up
    /// to this many bytes in all; a step whose inputs are larger fails.
    pub max_input_bytes: u64,
    /// Variables of agentd's environment passed on to the programs steps run, besides
    /// the basics (PATH, HOME, the locale, the temporary directory). Secrets
    /// (ANTHROPIC_API_KEY, AGENTD_TOKEN) are never passed.
    pub pass_env: Vec<String>,
    /// Desktop notifications.
    pub notify: bool,
    /// Where the agent token and the Claude key are stored.
    pub credential_store: CredentialStoreKind,
    pub claude: ClaudeConfig,
    pub claude_code: ClaudeCodeConfig,
    pub external: ExternalConfig,
    /// Where a meeting's availability request is answered from; without it the person
    /// answers in the hub's inbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<crate::calendar::CalendarConfig>,
}

/// Settings of the `claude` executor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaudeConfig {
    pub model: String,
    pub max_tokens: u32,
    /// The Messages API base URL; `ANTHROPIC_BASE_URL` overrides it.
    pub base_url: String,
    /// The `anthropic-version` header.
    pub api_version: String,
    /// Model turns before the step is failed.
    pub max_turns: u32,
    /// Attempts for a 429/529/5xx answer before the step is failed.
    pub max_retries: u32,
    /// Timeout of one `run_shell` tool call.
    pub shell_timeout_secs: u64,
    /// Largest tool output returned to the model, in bytes.
    pub max_tool_output_bytes: usize,
    /// A tool approval nobody answers within this is denied.
    pub ask_timeout_secs: u64,
    /// Policy per tool: `run_shell`, `read_file`, `write_file`, `edit_file`, `list_files`.
    pub tools: BTreeMap<String, ToolPolicy>,
}

/// Settings of the `claude-code` executor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaudeCodeConfig {
    /// The `claude` program; found on PATH when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<PathBuf>,
    /// `--model`; Claude Code's own default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// More arguments for `claude`.
    pub args: Vec<String>,
    /// Pass agentd's Claude API key to Claude Code as ANTHROPIC_API_KEY; otherwise (or
    /// without a key) Claude Code uses its own login.
    pub pass_key: bool,
    /// A permission prompt nobody answers within this is denied.
    pub ask_timeout_secs: u64,
    /// Policy per tool (`Bash`, `Write`, …), per tool and argument pattern
    /// (`Bash(git *)`), or for every tool (`*`): the most specific match wins; `ask`
    /// without a match.
    pub tools: BTreeMap<String, ToolPolicy>,
}

impl Default for ClaudeCodeConfig {
    fn default() -> Self {
        ClaudeCodeConfig {
            program: None,
            model: None,
            args: Vec::new(),
            pass_key: true,
            ask_timeout_secs: 600,
            tools: BTreeMap::new(),
        }
    }
}

/// Settings of the `external` executor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalConfig {
    /// The program that gets the step as JSON on stdin and prints its result as JSON.
    pub program: Option<PathBuf>,
    pub args: Vec<String>,
    /// Variables set in the program's environment (besides the basics and `pass_env`).
    pub env: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hub: None,
            ca_cert: None,
            insecure: false,
            max_concurrency: 1,
            capabilities: Vec::new(),
            default_executor: None,
            step_timeout_secs: 3600,
            cancel_grace_secs: 10,
            max_input_bytes: 1 << 30,
            pass_env: Vec::new(),
            notify: true,
            credential_store: CredentialStoreKind::Auto,
            claude: ClaudeConfig::default(),
            claude_code: ClaudeCodeConfig::default(),
            external: ExternalConfig::default(),
            calendar: None,
        }
    }
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        ClaudeConfig {
            model: "claude-sonnet-4-5".into(),
            max_tokens: 8192,
            base_url: "https://api.anthropic.com".into(),
            api_version: "2023-06-01".into(),
            max_turns: 50,
            max_retries: 5,
            shell_timeout_secs: 120,
            max_tool_output_bytes: 32 * 1024,
            ask_timeout_secs: 600,
            tools: BTreeMap::new(),
        }
    }
}

impl ClaudeConfig {
    /// The policy of one tool: the configured one, else the default (`run_shell` asks,
    /// the file tools run), and unknown tools are denied.
    pub fn policy(&self, tool: &str) -> ToolPolicy {
        if let Some(policy) = self.tools.get(tool) {
            return *policy;
        }
        match tool {
            "run_shell" => ToolPolicy::Ask,
            "read_file" | "write_file" | "edit_file" | "list_files" => ToolPolicy::Auto,
            _ => ToolPolicy::Deny,
        }
    }
}

/// The loaded configuration with the paths it came from and the flags applied.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub paths: Paths,
    pub json: bool,
}

impl Loaded {
    /// Loads defaults ← file ← env ← flags.
    pub fn load(args: &GlobalArgs) -> Result<Loaded> {
        let paths = Paths::discover(args.config.as_deref())?;
        let mut config = match std::fs::read_to_string(&paths.config_file) {
            Ok(text) => toml::from_str::<Config>(&text).map_err(|err| {
                Error::config(format!(
                    "invalid configuration in {}: {}",
                    paths.config_file.display(),
                    err.message()
                ))
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && args.config.is_none() => {
                Config::default()
            }
            Err(err) => {
                return Err(Error::config(format!(
                    "cannot read the configuration {}: {err}",
                    paths.config_file.display()
                )));
            }
        };
        if let Some(hub) = &args.hub {
            config.hub = Some(hub.clone());
        }
        if let Some(ca_cert) = &args.ca_cert {
            config.ca_cert = Some(ca_cert.clone());
        }
        if args.insecure {
            config.insecure = true;
        }
        if let Ok(store) = std::env::var("AGENTD_CREDENTIAL_STORE") {
            config.credential_store = match store.as_str() {
                "auto" => CredentialStoreKind::Auto,
                "keyring" => CredentialStoreKind::Keyring,
                "file" => CredentialStoreKind::File,
                other => {
                    return Err(Error::config(format!(
                        "AGENTD_CREDENTIAL_STORE is `{other}`; expected auto, keyring or file"
                    )));
                }
            };
        }
        if let Some(executor) = &config.default_executor
            && Kind::parse(executor).is_none()
        {
            return Err(Error::config(format!(
                "default_executor in {} is `{executor}`; expected {}",
                paths.config_file.display(),
                Kind::NAMES
            )));
        }
        let secrets = config
            .pass_env
            .iter()
            .chain(config.external.env.keys())
            .filter(|name| crate::executor::env::is_secret(name))
            .collect::<Vec<_>>();
        if let Some(secret) = secrets.first() {
            return Err(Error::config(format!(
                "{} names `{secret}`, a secret of agentd that is never passed to the programs steps run; remove it",
                paths.config_file.display()
            )));
        }
        if let Some(calendar) = &config.calendar {
            calendar.hours()?;
        }
        if config.max_concurrency == 0 {
            return Err(Error::config(format!(
                "max_concurrency in {} must be at least 1",
                paths.config_file.display()
            )));
        }
        Ok(Loaded {
            config,
            paths,
            json: args.json,
        })
    }

    /// The hub URL, or the error telling the user to log in.
    pub fn hub(&self) -> Result<&str> {
        self.config.hub.as_deref().ok_or_else(|| {
            Error::config(
                "no hub configured; run `agentd login --hub URL` first (or set AGENTD_HUB)",
            )
        })
    }

    /// Writes the configuration file (0600 on Unix, directory created as needed).
    pub fn save(&self) -> Result<()> {
        let text = toml::to_string_pretty(&self.config)
            .map_err(|err| Error::other(format!("cannot encode the configuration: {err}")))?;
        crate::state::write_private(&self.paths.config_file, text.as_bytes())
    }
}

#[cfg(test)]
mod tests;
