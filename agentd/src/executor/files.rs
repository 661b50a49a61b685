//! Files in and out of a step. Before it runs, its attachments (`input.attachments`)
//! and the files of the earlier steps it reads (`StepOutput.files`) are downloaded into
//! `inputs/` of its work dir, each checked
//! against its announced size (and digest, when the hub sends one), all of them within
//! `max_input_bytes`. After it succeeds, the files it declares (`input.outputs` globs of
//! a shell or claude-code step, the files the claude tools and Claude Code wrote) are
//! uploaded with `PUT /v1/files` and their ids go into the submit; nothing is referenced
//! before its upload finished, and a crash mid-upload is resumed ([`PendingUploads`]).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use agenthub_protocol::{LogStream, StepInfo, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::executor::{Failure, Outcome, StepCtx};
use crate::hub::{HubClient, UploadedFile};
use crate::progress;

/// Where a step finds the files of the steps it depends on, in its work dir.
pub const INPUTS_DIR: &str = "inputs";

/// The files to download for `step`: its own attachments (`input.attachments`, ids
/// of uploaded files), then the files of the earlier steps it reads; each with where
/// it comes from, for messages.
pub fn input_files(step: &StepInfo) -> Vec<(String, String)> {
    let attachments = step
        .input
        .get("attachments")
        .and_then(|list| list.as_array())
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str())
        .map(|id| (id.to_string(), "the step's attachments".to_string()));
    let outputs = step.inputs.iter().flat_map(|output| {
        output
            .files
            .iter()
            .map(|id| (id.clone(), format!("\"{}\"", output.title)))
    });
    attachments.chain(outputs).collect()
}

/// Whether `step` has files to download.
pub fn has_inputs(step: &StepInfo) -> bool {
    !input_files(step).is_empty()
}

/// Downloads the files of the step's inputs into `inputs/`; returns their paths.
pub async fn download_inputs(
    ctx: &StepCtx,
    hub: &HubClient,
    max_total_bytes: u64,
) -> Result<Vec<PathBuf>, Failure> {
    let dir = ctx.work_dir.join(INPUTS_DIR);
    let mut left = max_total_bytes;
    let mut names = HashSet::new();
    let mut paths = Vec::new();
    for (file_id, origin) in input_files(&ctx.step) {
        let bar = progress::transfer(0, format!("downloading {file_id} ({origin})"));
        let shown = bar.clone();
        let downloaded = hub
            .download(&file_id, &dir, left, move |received, size| {
                shown.set_length(size);
                shown.set_position(received);
            })
            .await;
        match &downloaded {
            Ok(_) => bar.finish_and_clear(),
            Err(_) => bar.abandon(),
        }
        let file = downloaded.map_err(|err| {
            let reason = format!("cannot download file {file_id} of {origin}: {err}");
            match err {
                Error::Refused { status: 413, .. } => Failure::fatal(format!(
                    "{reason} (max_input_bytes in config.toml is {max_total_bytes})"
                )),
                Error::Refused { .. } => Failure::fatal(reason),
                _ => Failure::retryable(reason),
            }
        })?;
        left -= file.size_bytes;
        let mut path = file.path.clone();
        if !names.insert(file.name.clone()) {
            // Two inputs share a name: the later one keeps its id in front.
            path = dir.join(format!("{file_id}-{}", file.name));
            std::fs::rename(&file.path, &path).map_err(|err| {
                Failure::retryable(format!("cannot rename {}: {err}", file.path.display()))
            })?;
        }
        let shown = path.strip_prefix(&ctx.work_dir).unwrap_or(&path);
        ctx.log(
            LogStream::Info,
            format!(
                "downloaded {} from {origin} ({} bytes, sha-256 {})\n",
                shown.display(),
                file.size_bytes,
                file.sha256
            ),
        )
        .await;
        paths.push(path);
    }
    Ok(paths)
}

/// The output globs a step declares in `input.outputs` (a list of strings, relative to
/// the work dir).
pub fn declared_outputs(step: &StepInfo) -> Result<Vec<String>, Failure> {
    let Some(outputs) = step.input.get("outputs") else {
        return Ok(Vec::new());
    };
    let invalid = || {
        Failure::fatal(
            "input.outputs must be a list of paths or globs relative to the work dir, e.g. [\"dist/*.tar.gz\"]",
        )
    };
    let list = outputs.as_array().ok_or_else(invalid)?;
    let mut patterns = Vec::new();
    for item in list {
        let pattern = item.as_str().ok_or_else(invalid)?;
        let escapes = Path::new(pattern)
            .components()
            .any(|part| !matches!(part, Component::Normal(_) | Component::CurDir));
        if pattern.is_empty() || escapes {
            return Err(Failure::fatal(format!(
                "input.outputs names `{pattern}`, which is not inside the work dir (a relative path without `..`)"
            )));
        }
        if let Err(err) = glob::Pattern::new(pattern) {
            return Err(Failure::fatal(format!(
                "input.outputs names `{pattern}`, which is not a valid glob: {err}"
            )));
        }
        patterns.push(pattern.to_string());
    }
    Ok(patterns)
}

/// The files under `work_dir` that `patterns` match, each inside the work dir after
/// resolving links, in a stable order. A pattern matching no file is an error.
pub fn matching_files(work_dir: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, Failure> {
    let root = work_dir
        .canonicalize()
        .map_err(|err| Failure::retryable(format!("the work dir is not readable: {err}")))?;
    let mut files = Vec::new();
    for pattern in patterns {
        let full = format!(
            "{}/{pattern}",
            glob::Pattern::escape(&work_dir.display().to_string())
        );
        let mut matched = false;
        let paths = glob::glob(&full).map_err(|err| {
            Failure::fatal(format!(
                "input.outputs `{pattern}` is not a valid glob: {err}"
            ))
        })?;
        for path in paths.flatten() {
            let real = path.canonicalize().map_err(|err| {
                Failure::fatal(format!("cannot read the output {}: {err}", path.display()))
            })?;
            if !real.starts_with(&root) {
                return Err(Failure::fatal(format!(
                    "the output {} leads outside the work dir",
                    path.display()
                )));
            }
            if real.is_file() {
                matched = true;
                if !files.contains(&path) {
                    files.push(path);
                }
            }
        }
        if !matched {
            return Err(Failure::fatal(format!(
                "the step declares the output `{pattern}` but no file matches it"
            )));
        }
    }
    Ok(files)
}

/// Where a step's [`PendingUploads`] are kept while its outputs upload, in its work dir.
pub const UPLOADS_FILE: &str = ".agentd-uploads.json";

/// How often one output's upload is tried before the step fails (retryable).
const UPLOAD_TRIES: u32 = 4;

/// A finished run whose outputs are being uploaded: kept in the step's work dir
/// ([`UPLOADS_FILE`]) and rewritten after each file, so that agentd restarted after a
/// crash finishes the uploads of the same attempt instead of running the step again.
/// Files uploaded before the crash keep their ids; the one cut off is sent again from
/// its start (the hub drops an interrupted upload). The submit is journaled only when
/// every file is uploaded, so it never names a file whose upload did not complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUploads {
    pub step: StepInfo,
    pub attempt: u32,
    /// The outcome, its `files` being the ids known before the uploads.
    pub result: Value,
    pub summary: Option<String>,
    pub files: Vec<String>,
    pub usage: Option<Usage>,
    /// The outputs, in order, each with its id once uploaded.
    pub uploads: Vec<Upload>,
}

/// One output of [`PendingUploads`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub path: PathBuf,
    /// The hub's file id, once the upload completed.
    pub file_id: Option<String>,
}

impl PendingUploads {
    /// The uploads of `outcome`'s `produced` files for the attempt in `ctx`.
    pub fn new(ctx: &StepCtx, outcome: Outcome, produced: Vec<PathBuf>) -> PendingUploads {
        PendingUploads {
            step: ctx.step.clone(),
            attempt: ctx.attempt,
            result: outcome.result,
            summary: outcome.summary,
            files: outcome.files,
            usage: outcome.usage,
            uploads: produced
                .into_iter()
                .map(|path| Upload {
                    path,
                    file_id: None,
                })
                .collect(),
        }
    }

    /// Reads the record of `work_dir`, if there is one (an unreadable record is
    /// logged and treated as none: its step then runs again when pushed).
    pub fn read(work_dir: &Path) -> Option<PendingUploads> {
        let path = work_dir.join(UPLOADS_FILE);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(pending) => Some(pending),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "skipping an unreadable upload record");
                None
            }
        }
    }

    /// The records left in the work dirs under `work_root` (by a crash mid-upload).
    pub fn left_in(work_root: &Path) -> Vec<PendingUploads> {
        let Ok(entries) = std::fs::read_dir(work_root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| PendingUploads::read(&entry.path()))
            .collect()
    }

    /// Removes the record of `attempt` in `work_dir` (its result is journaled, or the
    /// attempt is over); a record of another attempt stays.
    pub fn remove(work_dir: &Path, attempt: u32) {
        if PendingUploads::read(work_dir).is_none_or(|pending| pending.attempt != attempt) {
            return;
        }
        match std::fs::remove_file(work_dir.join(UPLOADS_FILE)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %work_dir.display(), error = %err, "cannot remove the upload record");
            }
            _ => {}
        }
    }

    fn save(&self, work_dir: &Path) -> Result<(), Failure> {
        let bytes = serde_json::to_vec_pretty(self).expect("the upload record encodes");
        crate::state::write_private(&work_dir.join(UPLOADS_FILE), &bytes)
            .map_err(|err| Failure::retryable(format!("cannot record the step's uploads: {err}")))
    }

    /// The outcome to submit, once every upload completed.
    fn outcome(self) -> Outcome {
        let mut files = self.files;
        files.extend(self.uploads.into_iter().filter_map(|upload| upload.file_id));
        Outcome {
            result: self.result,
            summary: self.summary,
            files,
            usage: self.usage,
            outputs: Vec::new(),
        }
    }
}

/// Uploads what is left of `pending` (recording each id as it completes) and returns
/// the outcome naming every file. An upload cut off (the connection broke, the hub
/// restarted) is sent again from its start, up to four tries.
pub async fn upload(
    ctx: &StepCtx,
    hub: &HubClient,
    mut pending: PendingUploads,
) -> Result<Outcome, Failure> {
    pending.save(&ctx.work_dir)?;
    for index in 0..pending.uploads.len() {
        if pending.uploads[index].file_id.is_some() {
            continue;
        }
        let path = pending.uploads[index].path.clone();
        let uploaded = upload_one(ctx, hub, &path).await?;
        pending.uploads[index].file_id = Some(uploaded.id);
        pending.save(&ctx.work_dir)?;
    }
    Ok(pending.outcome())
}

async fn upload_one(ctx: &StepCtx, hub: &HubClient, path: &Path) -> Result<UploadedFile, Failure> {
    let shown = path.strip_prefix(&ctx.work_dir).unwrap_or(path).display();
    let mut delay = Duration::from_secs(1);
    for try_number in 1..=UPLOAD_TRIES {
        let bar = progress::transfer(
            std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0),
            format!("uploading {shown}"),
        );
        let sent = bar.clone();
        let uploaded = tokio::select! {
            uploaded = hub.upload(path, move |bytes| sent.set_position(bytes)) => uploaded,
            () = ctx.stopped() => {
                bar.abandon();
                return Err(Failure::retryable(format!("the upload of {shown} was stopped")));
            }
        };
        bar.finish_and_clear();
        let err = match uploaded {
            Ok(uploaded) => {
                ctx.log(
                    LogStream::Info,
                    format!(
                        "uploaded {shown} as file {} ({} bytes, sha-256 {})\n",
                        uploaded.id, uploaded.size_bytes, uploaded.sha256
                    ),
                )
                .await;
                return Ok(uploaded);
            }
            Err(err @ (Error::Refused { .. } | Error::Config(_))) => {
                return Err(Failure::fatal(format!(
                    "cannot upload the output {shown}: {err}"
                )));
            }
            Err(err) => err,
        };
        let reason = format!("cannot upload the output {shown}: {err}");
        if try_number == UPLOAD_TRIES {
            return Err(Failure::retryable(reason));
        }
        ctx.log(
            LogStream::Info,
            format!(
                "{reason}; sending it again from its start in {} s (try {} of {UPLOAD_TRIES})\n",
                delay.as_secs(),
                try_number + 1
            ),
        )
        .await;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.stopped() => {
                return Err(Failure::retryable(format!("the upload of {shown} was stopped")));
            }
        }
        delay *= 2;
    }
    unreachable!("the last try returns")
}

#[cfg(test)]
mod tests;
