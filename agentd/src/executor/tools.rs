//! The tools the `claude` executor offers the model, each confined to the step's work
//! dir: a path that escapes it (absolute, `..`, or through a symlink) is refused.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::executor::env::ChildEnv;
use crate::executor::process::Group;
use crate::executor::shell::shell_command;
use crate::executor::tail;

/// What a tool call answered, for the `tool_result` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    fn ok(content: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: content.into(),
            is_error: false,
        }
    }

    /// A tool call that failed; the model sees the message.
    pub fn error(content: impl Into<String>) -> ToolOutput {
        ToolOutput {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Limits of tool calls.
#[derive(Debug, Clone, Copy)]
pub struct ToolLimits {
    pub shell_timeout: Duration,
    pub max_output_bytes: usize,
}

/// The tool definitions sent in the `tools` array of a Messages API request.
pub fn definitions() -> Value {
    json!([
        {
            "name": "run_shell",
            "description": "Run a shell command in the working directory. Returns the exit code, stdout and stderr (truncated).",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string", "description": "The command line."}}, "required": ["command"]}
        },
        {
            "name": "read_file",
            "description": "Read a UTF-8 text file, by path relative to the working directory.",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
        },
        {
            "name": "write_file",
            "description": "Create or overwrite a file (parent directories are created), by path relative to the working directory.",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path", "content"]}
        },
        {
            "name": "edit_file",
            "description": "Replace the one exact occurrence of old_string with new_string in a file.",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"}}, "required": ["path", "old_string", "new_string"]}
        },
        {
            "name": "list_files",
            "description": "List the files under a directory of the working directory (recursively, at most 1000 entries).",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string", "description": "Directory, default the working directory."}}}
        }
    ])
}

/// Runs one tool call in `work_dir`.
pub async fn run(
    name: &str,
    input: &Value,
    work_dir: &Path,
    limits: ToolLimits,
    env: &ChildEnv,
) -> ToolOutput {
    let result = match name {
        "run_shell" => run_shell(input, work_dir, limits, env).await,
        "read_file" => read_file(input, work_dir, limits),
        "write_file" => write_file(input, work_dir),
        "edit_file" => edit_file(input, work_dir),
        "list_files" => list_files(input, work_dir),
        other => Err(format!("unknown tool `{other}`")),
    };
    match result {
        Ok(output) => output,
        Err(message) => ToolOutput::error(message),
    }
}

fn string_field<'a>(input: &'a Value, field: &str) -> Result<&'a str, String> {
    input
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field `{field}`"))
}

/// Resolves `relative` inside `work_dir`, refusing anything that escapes it.
pub fn confine(work_dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let requested = Path::new(relative);
    let mut resolved = PathBuf::new();
    for component in requested.components() {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !resolved.pop() {
                    return Err(format!("`{relative}` is outside the working directory"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`{relative}` is an absolute path; use a path relative to the working directory"
                ));
            }
        }
    }
    let full = work_dir.join(&resolved);
    // A symlink inside the work dir may point outside it: check the deepest existing
    // ancestor after resolving links.
    let root = work_dir
        .canonicalize()
        .map_err(|err| format!("the working directory is not readable: {err}"))?;
    let mut existing = full.as_path();
    while !existing.exists() {
        existing = match existing.parent() {
            Some(parent) => parent,
            None => break,
        };
    }
    let real = existing
        .canonicalize()
        .map_err(|err| format!("cannot resolve `{relative}`: {err}"))?;
    if !real.starts_with(&root) {
        return Err(format!("`{relative}` leads outside the working directory"));
    }
    Ok(full)
}

async fn run_shell(
    input: &Value,
    work_dir: &Path,
    limits: ToolLimits,
    env: &ChildEnv,
) -> Result<ToolOutput, String> {
    let command = string_field(input, "command")?;
    let child = shell_command(command, work_dir, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot start the shell: {err}"))?;
    // Dropped when the call ends or the step stops: what the command started is killed.
    let group = Group::of(&child);
    let output = match tokio::time::timeout(limits.shell_timeout, child.wait_with_output()).await {
        Ok(output) => output.map_err(|err| format!("the command failed to run: {err}"))?,
        Err(_) => {
            group.kill();
            return Ok(ToolOutput::error(format!(
                "the command did not finish within {} s and was killed",
                limits.shell_timeout.as_secs()
            )));
        }
    };
    let half = limits.max_output_bytes / 2;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output
        .status
        .code()
        .map(|code| code.to_string())
        .unwrap_or_else(|| "killed by a signal".into());
    Ok(ToolOutput {
        content: format!(
            "exit code: {code}\nstdout:\n{}\nstderr:\n{}",
            tail(&stdout, half),
            tail(&stderr, half)
        ),
        is_error: !output.status.success(),
    })
}

fn read_file(input: &Value, work_dir: &Path, limits: ToolLimits) -> Result<ToolOutput, String> {
    let relative = string_field(input, "path")?;
    let path = confine(work_dir, relative)?;
    let bytes = std::fs::read(&path).map_err(|err| format!("cannot read `{relative}`: {err}"))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("`{relative}` is not UTF-8 text"))?;
    if text.len() > limits.max_output_bytes {
        let mut end = limits.max_output_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        return Ok(ToolOutput::ok(format!(
            "{}\n[truncated: the file has {} bytes]",
            &text[..end],
            text.len()
        )));
    }
    Ok(ToolOutput::ok(text))
}

fn write_file(input: &Value, work_dir: &Path) -> Result<ToolOutput, String> {
    let relative = string_field(input, "path")?;
    let content = string_field(input, "content")?;
    let path = confine(work_dir, relative)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| format!("cannot create the directory of `{relative}`: {err}"))?;
    }
    std::fs::write(&path, content).map_err(|err| format!("cannot write `{relative}`: {err}"))?;
    Ok(ToolOutput::ok(format!(
        "wrote {} bytes to {relative}",
        content.len()
    )))
}

fn edit_file(input: &Value, work_dir: &Path) -> Result<ToolOutput, String> {
    let relative = string_field(input, "path")?;
    let old = string_field(input, "old_string")?;
    let new = string_field(input, "new_string")?;
    if old.is_empty() {
        return Err("old_string must not be empty".into());
    }
    let path = confine(work_dir, relative)?;
    let text =
        std::fs::read_to_string(&path).map_err(|err| format!("cannot read `{relative}`: {err}"))?;
    match text.matches(old).count() {
        0 => Err(format!("old_string does not occur in `{relative}`")),
        1 => {
            std::fs::write(&path, text.replacen(old, new, 1))
                .map_err(|err| format!("cannot write `{relative}`: {err}"))?;
            Ok(ToolOutput::ok(format!("edited {relative}")))
        }
        n => Err(format!(
            "old_string occurs {n} times in `{relative}`; include more context so it is unique"
        )),
    }
}

fn list_files(input: &Value, work_dir: &Path) -> Result<ToolOutput, String> {
    let relative = input.get("path").and_then(Value::as_str).unwrap_or(".");
    let root = confine(work_dir, relative)?;
    let mut entries = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let read =
            std::fs::read_dir(&dir).map_err(|err| format!("cannot list `{relative}`: {err}"))?;
        for entry in read.flatten() {
            let path = entry.path();
            let shown = path
                .strip_prefix(work_dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            entries.push(if is_dir { format!("{shown}/") } else { shown });
            if is_dir {
                stack.push(path);
            }
            if entries.len() >= 1000 {
                entries.sort();
                entries.push("[truncated at 1000 entries]".into());
                return Ok(ToolOutput::ok(entries.join("\n")));
            }
        }
    }
    entries.sort();
    Ok(ToolOutput::ok(if entries.is_empty() {
        "(empty)".to_string()
    } else {
        entries.join("\n")
    }))
}

#[cfg(test)]
mod tests;
