//! Secrets (the agent token and the Claude key): the environment first, then the OS
//! keyring, then a file readable only by the user where no keyring is reachable.
//! Secret values never appear in `Debug` output or log lines.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::CredentialStoreKind;
use crate::error::{Error, Result};

const KEYRING_SERVICE: &str = "agentd";

/// Which secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretName {
    /// The `aha_…` agent token for the hub.
    AgentToken,
    /// The Anthropic API key.
    ClaudeKey,
}

impl SecretName {
    /// The environment variable that overrides the stored value.
    pub fn env_var(self) -> &'static str {
        match self {
            SecretName::AgentToken => "AGENTD_TOKEN",
            SecretName::ClaudeKey => "ANTHROPIC_API_KEY",
        }
    }

    fn key(self) -> &'static str {
        match self {
            SecretName::AgentToken => "agent_token",
            SecretName::ClaudeKey => "claude_key",
        }
    }

    /// For messages.
    pub fn describe(self) -> &'static str {
        match self {
            SecretName::AgentToken => "agent token",
            SecretName::ClaudeKey => "Claude API key",
        }
    }
}

/// A secret value. `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (surrounding whitespace removed).
    pub fn new(value: &str) -> Secret {
        Secret(value.trim().to_string())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret was found or stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An environment variable.
    Env(&'static str),
    /// The OS keyring.
    Keyring,
    /// The credentials file.
    File(PathBuf),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Env(var) => write!(f, "the environment variable {var}"),
            Location::Keyring => f.write_str("the OS keyring"),
            Location::File(path) => write!(f, "the file {} (readable only by you)", path.display()),
        }
    }
}

/// The secret stores, in the configured order.
#[derive(Debug, Clone)]
pub struct Credentials {
    kind: CredentialStoreKind,
    file: PathBuf,
}

impl Credentials {
    /// Stores of `kind`, with `file` as the fallback file.
    pub fn new(kind: CredentialStoreKind, file: &Path) -> Credentials {
        Credentials {
            kind,
            file: file.to_path_buf(),
        }
    }

    /// Finds a secret: environment, keyring, file.
    pub fn get(&self, name: SecretName) -> Result<Option<(Secret, Location)>> {
        if let Ok(value) = std::env::var(name.env_var())
            && !value.trim().is_empty()
        {
            return Ok(Some((Secret::new(&value), Location::Env(name.env_var()))));
        }
        if self.kind != CredentialStoreKind::File {
            match keyring_entry(name).and_then(|entry| entry.get_password()) {
                Ok(value) => return Ok(Some((Secret::new(&value), Location::Keyring))),
                Err(keyring_core::Error::NoEntry) => {}
                Err(err) if self.kind == CredentialStoreKind::Keyring => {
                    return Err(Error::config(format!(
                        "cannot read the {} from the OS keyring: {err}",
                        name.describe()
                    )));
                }
                Err(_) => {}
            }
        }
        if self.kind == CredentialStoreKind::Keyring {
            return Ok(None);
        }
        let file = self.read_file()?;
        Ok(file
            .get(name.key())
            .map(|value| (Secret::new(value), Location::File(self.file.clone()))))
    }

    /// Stores a secret in the keyring, or in the file where no keyring is reachable (and
    /// says so on stderr).
    pub fn set(&self, name: SecretName, secret: &Secret) -> Result<Location> {
        if self.kind != CredentialStoreKind::File {
            match keyring_entry(name).and_then(|entry| entry.set_password(secret.expose())) {
                Ok(()) => {
                    // A stale copy in the file would be found after a keyring outage.
                    self.remove_from_file(name)?;
                    return Ok(Location::Keyring);
                }
                Err(err) if self.kind == CredentialStoreKind::Keyring => {
                    return Err(Error::config(format!(
                        "cannot store the {} in the OS keyring: {err}",
                        name.describe()
                    )));
                }
                Err(err) => {
                    eprintln!(
                        "agentd: no OS keyring is reachable ({}); storing the {} in {} instead",
                        one_line(&err.to_string()),
                        name.describe(),
                        self.file.display()
                    );
                }
            }
        }
        let mut file = self.read_file()?;
        file.insert(name.key().to_string(), secret.expose().to_string());
        self.write_file(&file)?;
        Ok(Location::File(self.file.clone()))
    }

    /// Removes a secret from every store; answers where it was.
    pub fn delete(&self, name: SecretName) -> Result<Vec<Location>> {
        let mut removed = Vec::new();
        if self.kind != CredentialStoreKind::File
            && keyring_entry(name)
                .and_then(|entry| entry.delete_credential())
                .is_ok()
        {
            removed.push(Location::Keyring);
        }
        if self.remove_from_file(name)? {
            removed.push(Location::File(self.file.clone()));
        }
        Ok(removed)
    }

    fn remove_from_file(&self, name: SecretName) -> Result<bool> {
        let mut file = self.read_file()?;
        if file.remove(name.key()).is_none() {
            return Ok(false);
        }
        self.write_file(&file)?;
        Ok(true)
    }

    fn read_file(&self) -> Result<BTreeMap<String, String>> {
        let text = match std::fs::read_to_string(&self.file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(err) => {
                return Err(Error::config(format!(
                    "cannot read {}: {err}",
                    self.file.display()
                )));
            }
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.file)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(Error::config(format!(
                    "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
                    self.file.display(),
                    mode & 0o777,
                    self.file.display()
                )));
            }
        }
        toml::from_str(&text).map_err(|err| {
            Error::config(format!(
                "invalid credentials file {}: {}",
                self.file.display(),
                err.message()
            ))
        })
    }

    fn write_file(&self, file: &BTreeMap<String, String>) -> Result<()> {
        let text = toml::to_string(file).expect("a string map encodes");
        crate::state::write_private(&self.file, text.as_bytes())
    }
}

fn keyring_entry(name: SecretName) -> keyring_core::Result<keyring_core::Entry> {
    platform_store()?.build(KEYRING_SERVICE, name.key(), None)
}

#[cfg(target_os = "linux")]
fn platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    let store: Arc<keyring_core::CredentialStore> =
        zbus_secret_service_keyring_store::Store::new()?;
    Ok(store)
}

/// The macOS keychain ("legacy keychain" store: works for command-line programs that
/// are not signed with a provisioning profile).
#[cfg(target_os = "macos")]
fn platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    let store: Arc<keyring_core::CredentialStore> =
        apple_native_keyring_store::keychain::Store::new()?;
    Ok(store)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    Err(keyring_core::Error::NotSupportedByStore(
        "this build of agentd has no keyring support on this platform".into(),
    ))
}

fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests;
