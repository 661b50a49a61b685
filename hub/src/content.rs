//! What the hub accepts as text and free JSON, and how much of it an event carries.
//!
//! Two promises rest on this module. Everything the hub stores works the same on SQLite
//! and PostgreSQL: PostgreSQL refuses the NUL character (U+0000) in text, so text a person
//! writes (titles, descriptions, answers, comments, reasons, names) is refused with
//! `invalid` when it holds one, and text an agent's program produces (log lines,
//! summaries, self-checks, failure reasons, questions, progress messages) has each NUL
//! replaced by U+FFFD, so a step whose output holds one still logs and finishes. Free JSON
//! (step input and result) keeps NUL: it is stored as JSON text, where it is the escape
//! `\u0000`.
//!
//! And every event decodes within the protocol's limits (`Limits::default()`: 1 MiB per
//! frame, 64 levels of nesting, §13 of docs/protocol.md): free JSON nests at most
//! [`MAX_JSON_DEPTH`] levels (an event puts it at most 4 levels deeper), texts and values
//! have sizes that add up to less than a frame, shared large content (a task's
//! description, the outputs of dependencies) travels as a bounded excerpt with a
//! `truncated` flag, and [`crate::events::Outbox`] checks each event and what a single
//! request fans out.

use std::borrow::Cow;

use agenthub_protocol::Codec;
use serde_json::Value;

use crate::error::{Error, Result};

/// Task and step titles.
pub const MAX_TITLE_BYTES: usize = 500;
/// A task's description (the whole request body is at most 1 MiB anyway). Events carry
/// [`EXCERPT_BYTES`] of it.
pub const MAX_TASK_DESCRIPTION_BYTES: usize = 1024 * 1024;
/// A step's description.
pub const MAX_STEP_DESCRIPTION_BYTES: usize = 64 * 1024;
/// Answers, comments, questions, notes, summaries, self-checks, failure reasons, expected
/// inputs and outputs, and each question option.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// A workflow change's reason (copied into one `workflow.changed` per operation and
/// follower).
pub const MAX_REASON_BYTES: usize = 4 * 1024;
/// Options of one question.
pub const MAX_OPTIONS: usize = 20;
/// A file reference of a result (a file id or a link).
pub const MAX_FILE_REF_BYTES: usize = 2048;
/// Nesting of free JSON (step input, result), the value itself counting as level 1.
pub const MAX_JSON_DEPTH: usize = 32;
/// A step's input, encoded (the larger of JSON and MessagePack).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
/// A step's result, encoded (the larger of JSON and MessagePack).
pub const MAX_RESULT_BYTES: usize = 512 * 1024;
/// How much of a task's description (and of a dependency's summary, when its output is
/// cut) an event carries.
pub const EXCERPT_BYTES: usize = 4 * 1024;
/// The outputs of dependencies that one `step.ready` carries in full, encoded; the rest
/// are sent as `truncated` references.
pub const MAX_DEPENDENCY_OUTPUT_BYTES: usize = 256 * 1024;
/// One event, in either codec: what every client decodes (`Limits::default()`).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// All events one request may cause (the sum of their JSON payloads over every audience).
pub const MAX_FANOUT_BYTES: usize = 32 * 1024 * 1024;

/// Refuses text a person wrote when it holds NUL or is longer than `max` bytes.
pub fn person_text(field: &str, text: &str, max: usize) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::invalid_field(
            field,
            format!("`{field}` must not contain the NUL character (U+0000)"),
        ));
    }
    if text.len() > max {
        return Err(Error::invalid_field(
            field,
            format!("`{field}` is at most {max} bytes; it has {}", text.len()),
        ));
    }
    Ok(())
}

/// Optional text a person wrote; see [`person_text`].
pub fn person_text_opt(field: &str, text: Option<&str>, max: usize) -> Result<()> {
    text.map_or(Ok(()), |text| person_text(field, text, max))
}

/// Text an agent's program produced: each NUL becomes U+FFFD and the text is cut to at
/// most `max` bytes at a character boundary.
pub fn agent_text(text: &str, max: usize) -> String {
    let text = if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    };
    let (excerpt, _) = excerpt(&text, max);
    excerpt.to_string()
}

/// The first at most `max` bytes of `text`, cut at a character boundary, and whether
/// anything was cut.
pub fn excerpt(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// Refuses free JSON nested deeper than [`MAX_JSON_DEPTH`] or larger than `max_bytes` in
/// either codec.
pub fn json_value(field: &str, value: &Value, max_bytes: usize) -> Result<()> {
    let depth = json_depth(value);
    if depth > MAX_JSON_DEPTH {
        return Err(Error::invalid_field(
            field,
            format!(
                "`{field}` nests {depth} levels of arrays and objects; at most {MAX_JSON_DEPTH} are allowed"
            ),
        ));
    }
    let size = encoded_size(value);
    if size > max_bytes {
        return Err(Error::invalid_field(
            field,
            format!(
                "`{field}` is {size} bytes encoded; at most {max_bytes} are allowed (upload large content with PUT /v1/files and refer to its id)"
            ),
        ));
    }
    Ok(())
}

/// Levels of arrays and objects in `value` (a scalar is 0, `[]` is 1), as the protocol's
/// JSON depth check counts them.
pub fn json_depth(value: &Value) -> usize {
    // Iterative, so a deep value cannot exhaust the stack.
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level);
                stack.extend(items.iter().map(|item| (item, level + 1)));
            }
            Value::Object(fields) => {
                deepest = deepest.max(level);
                stack.extend(fields.values().map(|item| (item, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// The larger of the JSON and the MessagePack encoding of `value`, in bytes.
pub fn encoded_size<T: serde::Serialize>(value: &T) -> usize {
    let json = serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len());
    let msgpack = Codec::MsgPack
        .encode(value)
        .map_or(usize::MAX, |bytes| bytes.len());
    json.max(msgpack)
}

/// Where in a JSON body a string holds NUL (`steps[1].title`), if anywhere.
pub fn find_nul(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(idx, item)| {
                let len = path.len();
                path.push_str(&format!("[{idx}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(fields) => fields.iter().any(|(key, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let found = key.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(value, &mut path).then_some(path)
}

#[cfg(test)]
mod tests;
