//! Local state: the highest processed event `seq`, per-step work dirs, and the journal
//! of results the hub has not acknowledged yet. Files are written atomically.

use std::path::{Path, PathBuf};

use agenthub_protocol::{SelfCheck, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};

/// The persisted position in this agent's event stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The hub this position belongs to (a different hub starts from 0).
    pub hub: String,
    /// Highest event `seq` processed.
    pub last_seq: u64,
}

/// A result waiting for the hub's acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A `step.submit` to send.
    Submit {
        step_id: Uuid,
        attempt: u32,
        result: Value,
        summary: Option<String>,
        files: Vec<String>,
        usage: Option<Usage>,
        /// The executor's check of the result (absent in journals of older versions).
        #[serde(default)]
        check: Option<SelfCheck>,
    },
    /// A `step.fail` to send.
    Fail {
        step_id: Uuid,
        attempt: u32,
        reason: String,
        retryable: bool,
    },
}

impl JournalEntry {
    /// The step the entry is about.
    pub fn step_id(&self) -> Uuid {
        match self {
            JournalEntry::Submit { step_id, .. } | JournalEntry::Fail { step_id, .. } => *step_id,
        }
    }

    /// The attempt the entry is about.
    pub fn attempt(&self) -> u32 {
        match self {
            JournalEntry::Submit { attempt, .. } | JournalEntry::Fail { attempt, .. } => *attempt,
        }
    }
}

/// agentd's state directory.
#[derive(Debug, Clone)]
pub struct State {
    dir: PathBuf,
    work_root: PathBuf,
}

impl State {
    /// Opens (and creates) the state directory and the work dir root.
    pub fn open(dir: &Path, work_root: &Path) -> Result<State> {
        create_private_dir(dir)?;
        create_private_dir(&dir.join("journal"))?;
        create_private_dir(work_root)?;
        Ok(State {
            dir: dir.to_path_buf(),
            work_root: work_root.to_path_buf(),
        })
    }

    /// The stored position for `hub` (0 when none, or when it belongs to another hub).
    pub fn position(&self, hub: &str) -> Result<u64> {
        match std::fs::read(self.dir.join("position.json")) {
            Ok(bytes) => {
                let position: Position = serde_json::from_slice(&bytes).map_err(|err| {
                    Error::other(format!(
                        "corrupt state file {}: {err}",
                        self.dir.join("position.json").display()
                    ))
                })?;
                Ok(if position.hub == hub {
                    position.last_seq
                } else {
                    0
                })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(err) => Err(err.into()),
        }
    }

    /// Persists the highest processed `seq`.
    pub fn set_position(&self, hub: &str, last_seq: u64) -> Result<()> {
        let position = Position {
            hub: hub.to_string(),
            last_seq,
        };
        write_private(
            &self.dir.join("position.json"),
            &serde_json::to_vec(&position).expect("position encodes"),
        )
    }

    /// Adds a result to the journal (replacing one for the same step and attempt).
    pub fn journal_add(&self, entry: &JournalEntry) -> Result<()> {
        write_private(
            &self.journal_path(entry.step_id(), entry.attempt()),
            &serde_json::to_vec_pretty(entry).expect("journal entry encodes"),
        )
    }

    /// Removes a result the hub acknowledged (or refused for good).
    pub fn journal_remove(&self, step_id: Uuid, attempt: u32) -> Result<()> {
        match std::fs::remove_file(self.journal_path(step_id, attempt)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
            _ => Ok(()),
        }
    }

    /// Every journaled result, oldest first.
    pub fn journal(&self) -> Result<Vec<JournalEntry>> {
        let mut entries = Vec::new();
        for dir_entry in std::fs::read_dir(self.dir.join("journal"))? {
            let path = dir_entry?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let modified = std::fs::metadata(&path)?.modified()?;
            let bytes = std::fs::read(&path)?;
            match serde_json::from_slice::<JournalEntry>(&bytes) {
                Ok(entry) => entries.push((modified, entry)),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "skipping an unreadable journal entry");
                }
            }
        }
        entries.sort_by_key(|(modified, _)| *modified);
        Ok(entries.into_iter().map(|(_, entry)| entry).collect())
    }

    /// The directory holding the steps' work dirs.
    pub fn work_root(&self) -> &Path {
        &self.work_root
    }

    /// The work dir of a step (created on first use).
    pub fn work_dir(&self, step_id: Uuid) -> Result<PathBuf> {
        let dir = self.work_root.join(step_id.to_string());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn journal_path(&self, step_id: Uuid, attempt: u32) -> PathBuf {
        self.dir
            .join("journal")
            .join(format!("{step_id}-{attempt}.json"))
    }
}

/// Creates a directory (and its parents) readable only by the user on Unix.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|err| Error::other(format!("cannot create {}: {err}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (a temporary file, then a rename), readable only
/// by the user on Unix; the parent directory is created as needed.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let parent = path
        .parent()
        .ok_or_else(|| Error::other(format!("{} has no parent directory", path.display())))?;
    if !parent.exists() {
        create_private_dir(parent)?;
    }
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("file"),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|err| Error::other(format!("cannot write {}: {err}", path.display())))
}

#[cfg(test)]
mod tests;
