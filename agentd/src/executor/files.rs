//! Files in and out of a step. Before it runs, its attachments (`input.attachments`)
//! and the files of the earlier steps it reads (`StepOutput.files`) are downloaded into
//! `inputs/` of its work dir, each checked
//! against its announced size (and digest, when the hub sends one), all of them within
//! `max_input_bytes`. After it succeeds, the files it declares (a shell step's
//! `input.outputs` globs) are uploaded with `PUT /v1/files` and their ids go into the
//! submit; nothing is referenced before its upload finished.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use agenthub_protocol::{LogStream, StepInfo};

use crate::error::Error;
use crate::executor::{Failure, StepCtx};
use crate::hub::HubClient;

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
        let file = hub.download(&file_id, &dir, left).await.map_err(|err| {
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

/// Uploads `files` and returns their ids, in order.
pub async fn upload(
    ctx: &StepCtx,
    hub: &HubClient,
    files: &[PathBuf],
) -> Result<Vec<String>, Failure> {
    let mut ids = Vec::new();
    for path in files {
        let shown = path.strip_prefix(&ctx.work_dir).unwrap_or(path).display();
        let uploaded = hub.upload(path, |_| {}).await.map_err(|err| {
            let reason = format!("cannot upload the output {shown}: {err}");
            match err {
                Error::Refused { .. } => Failure::fatal(reason),
                _ => Failure::retryable(reason),
            }
        })?;
        ctx.log(
            LogStream::Info,
            format!(
                "uploaded {shown} as file {} ({} bytes, sha-256 {})\n",
                uploaded.id, uploaded.size_bytes, uploaded.sha256
            ),
        )
        .await;
        ids.push(uploaded.id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests;
