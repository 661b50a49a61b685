//! The environment of the programs a step runs (shell commands, the `external` program,
//! the `claude` executor's `run_shell` tool): built explicitly, never inherited. It holds
//! a few basics of agentd's own environment (PATH, HOME, the locale, the temporary
//! directory), the variables `pass_env` in config.toml names, the step's identity, and
//! what the step or the executor's configuration sets. Secrets (the Claude key, the agent
//! token) are never part of it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use serde_json::Value;
use tokio::process::Command;

/// Variables of agentd's environment every child gets when they are set.
pub const BASICS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
    // Windows' equivalents.
    "SYSTEMROOT",
    "SYSTEMDRIVE",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
    "TEMP",
    "TMP",
    "USERPROFILE",
    "USERNAME",
    "APPDATA",
    "LOCALAPPDATA",
];

/// Variables a child never gets, whoever names them: agentd's secrets.
pub const SECRETS: &[&str] = &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "AGENTD_TOKEN"];

/// Whether `name` is one of agentd's secrets (compared ignoring ASCII case, as Windows
/// does).
pub fn is_secret(name: &str) -> bool {
    SECRETS
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
}

/// An explicit environment for a child process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildEnv {
    vars: BTreeMap<OsString, OsString>,
}

impl ChildEnv {
    /// The basics and the `pass` variables, read from agentd's environment.
    pub fn inherit(pass: &[String]) -> ChildEnv {
        ChildEnv::inherit_from(std::env::vars_os(), pass)
    }

    /// The basics and the `pass` variables, read from `vars`.
    pub fn inherit_from(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
        pass: &[String],
    ) -> ChildEnv {
        let wanted = |name: &OsStr| {
            let Some(name) = name.to_str() else {
                return false;
            };
            !is_secret(name)
                && (BASICS.iter().any(|basic| basic.eq_ignore_ascii_case(name))
                    || pass.iter().any(|passed| passed == name))
        };
        ChildEnv {
            vars: vars.into_iter().filter(|(name, _)| wanted(name)).collect(),
        }
    }

    /// Sets one variable; a secret's name or an unusable name is refused.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0') {
            return Err(format!(
                "`{}` cannot be set in a program's environment",
                name.escape_debug()
            ));
        }
        if is_secret(name) {
            return Err(format!(
                "`{name}` holds a secret of agentd and is never passed to a program a step runs"
            ));
        }
        self.vars.insert(name.into(), value.into());
        Ok(())
    }

    /// Sets a secret: only for the one executor configured to pass it (Claude Code's
    /// `ANTHROPIC_API_KEY` with `pass_key`).
    pub fn set_secret(&mut self, name: &str, value: &str) {
        self.vars.insert(name.into(), value.into());
    }

    /// Sets the variables of a JSON object of strings (a step's `input.env`); `what`
    /// names it in errors.
    pub fn set_json(&mut self, env: &Value, what: &str) -> Result<(), String> {
        let Some(map) = env.as_object() else {
            return Err(format!(
                "{what} must be an object of strings, e.g. {{\"RUST_LOG\": \"debug\"}}"
            ));
        };
        for (name, value) in map {
            let Some(value) = value.as_str() else {
                return Err(format!("{what}.{name} must be a string"));
            };
            self.set(name, value)?;
        }
        Ok(())
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// Gives `command` exactly this environment.
    pub fn apply(&self, command: &mut Command) {
        command.env_clear();
        command.envs(&self.vars);
    }
}

#[cfg(test)]
mod tests;
