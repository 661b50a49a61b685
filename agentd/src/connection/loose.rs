//! A loose look at a hub frame that does not decode (nested deeper than the limits, a
//! field of the wrong type, …): its `type`, `seq`, and the step it is about, read by
//! skipping over values without recursing, whatever they hold. With these agentd can
//! acknowledge the event and fail its step instead of asking for it again for ever.

use agenthub_protocol::{Codec, Limits};
use serde::de::DeserializeOwned;
use std::ops::Range;
use uuid::Uuid;

/// What could be read of an undecodable frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loose {
    pub type_name: Option<String>,
    pub seq: Option<u64>,
    /// `step.step_id` (of a `step.ready`) or the top-level `step_id`.
    pub step_id: Option<Uuid>,
    /// `step.attempt` or the top-level `attempt`.
    pub attempt: Option<u32>,
}

impl Loose {
    /// Reads what it can of `bytes`.
    pub fn read(codec: Codec, bytes: &[u8]) -> Loose {
        let mut loose = Loose::default();
        let Some(fields) = map_entries(codec, bytes) else {
            return loose;
        };
        let mut step = None;
        for (key, value) in fields {
            let value = &bytes[value];
            match key.as_str() {
                "type" => loose.type_name = scalar(codec, value),
                "seq" => loose.seq = scalar(codec, value),
                "step_id" => loose.step_id = loose.step_id.or(scalar(codec, value)),
                "attempt" => loose.attempt = loose.attempt.or(scalar(codec, value)),
                "step" => step = Some(value),
                _ => {}
            }
        }
        if let Some(step) = step
            && let Some(fields) = map_entries(codec, step)
        {
            for (key, value) in fields {
                match key.as_str() {
                    "step_id" => loose.step_id = scalar(codec, &step[value]),
                    "attempt" => loose.attempt = scalar(codec, &step[value]),
                    _ => {}
                }
            }
        }
        loose
    }
}

/// Decodes a scalar value (a number, a string).
fn scalar<T: DeserializeOwned>(codec: Codec, bytes: &[u8]) -> Option<T> {
    let limits = Limits {
        max_frame_bytes: bytes.len(),
        max_depth: 2,
    };
    codec.decode(bytes, &limits).ok()
}

/// The entries of the map `bytes` holds: each key (when a string) and its value's
/// bytes, up to the first that cannot be scanned.
fn map_entries(codec: Codec, bytes: &[u8]) -> Option<Vec<(String, Range<usize>)>> {
    match codec {
        Codec::MsgPack => msgpack_entries(bytes),
        Codec::Json => json_entries(bytes),
    }
}

fn msgpack_entries(bytes: &[u8]) -> Option<Vec<(String, Range<usize>)>> {
    let mut pos = 0;
    let (kind, count) = msgpack_head(bytes, &mut pos)?;
    if kind != Head::Map {
        return None;
    }
    let mut entries = Vec::new();
    for _ in 0..count {
        let key_start = pos;
        if msgpack_skip(bytes, &mut pos).is_none() {
            break;
        }
        let key = scalar::<String>(Codec::MsgPack, &bytes[key_start..pos]);
        let value_start = pos;
        if msgpack_skip(bytes, &mut pos).is_none() {
            break;
        }
        if let Some(key) = key {
            entries.push((key, value_start..pos));
        }
    }
    Some(entries)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// A value of this many bytes after its head.
    Bytes,
    Array,
    Map,
}

/// Reads the head of a MessagePack value at `pos`: its kind and its byte length or item
/// count; `pos` moves past the head.
fn msgpack_head(bytes: &[u8], pos: &mut usize) -> Option<(Head, u64)> {
    let marker = *bytes.get(*pos)?;
    *pos += 1;
    let mut uint = |width: usize| -> Option<u64> {
        let slice = bytes.get(*pos..*pos + width)?;
        *pos += width;
        Some(
            slice
                .iter()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)),
        )
    };
    Some(match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (Head::Bytes, 0),
        0x80..=0x8f => (Head::Map, u64::from(marker & 0x0f)),
        0x90..=0x9f => (Head::Array, u64::from(marker & 0x0f)),
        0xa0..=0xbf => (Head::Bytes, u64::from(marker & 0x1f)),
        0xc4 | 0xd9 => (Head::Bytes, uint(1)?),
        0xc5 | 0xda => (Head::Bytes, uint(2)?),
        0xc6 | 0xdb => (Head::Bytes, uint(4)?),
        0xc7 => (Head::Bytes, uint(1)? + 1),
        0xc8 => (Head::Bytes, uint(2)? + 1),
        0xc9 => (Head::Bytes, uint(4)? + 1),
        0xca => (Head::Bytes, 4),
        0xcb => (Head::Bytes, 8),
        0xcc | 0xd0 => (Head::Bytes, 1),
        0xcd | 0xd1 => (Head::Bytes, 2),
        0xce | 0xd2 => (Head::Bytes, 4),
        0xcf | 0xd3 => (Head::Bytes, 8),
        0xd4 => (Head::Bytes, 2),
        0xd5 => (Head::Bytes, 3),
        0xd6 => (Head::Bytes, 5),
        0xd7 => (Head::Bytes, 9),
        0xd8 => (Head::Bytes, 17),
        0xdc => (Head::Array, uint(2)?),
        0xdd => (Head::Array, uint(4)?),
        0xde => (Head::Map, uint(2)?),
        0xdf => (Head::Map, uint(4)?),
        0xc1 => return None,
    })
}

/// Moves `pos` past one MessagePack value, however deeply nested (no recursion).
fn msgpack_skip(bytes: &[u8], pos: &mut usize) -> Option<()> {
    let mut values_left: u64 = 1;
    while values_left > 0 {
        values_left -= 1;
        let (kind, count) = msgpack_head(bytes, pos)?;
        match kind {
            Head::Bytes => {
                *pos = pos.checked_add(usize::try_from(count).ok()?)?;
                if *pos > bytes.len() {
                    return None;
                }
            }
            Head::Array => values_left = values_left.checked_add(count)?,
            Head::Map => values_left = values_left.checked_add(count.checked_mul(2)?)?,
        }
    }
    Some(())
}

fn json_entries(bytes: &[u8]) -> Option<Vec<(String, Range<usize>)>> {
    let mut pos = json_ws(bytes, 0);
    if bytes.get(pos) != Some(&b'{') {
        return None;
    }
    pos = json_ws(bytes, pos + 1);
    let mut entries = Vec::new();
    if bytes.get(pos) == Some(&b'}') {
        return Some(entries);
    }
    loop {
        let key_start = pos;
        let Some(key_end) = json_skip(bytes, pos) else {
            return Some(entries);
        };
        let Ok(key) = serde_json::from_slice::<String>(&bytes[key_start..key_end]) else {
            return Some(entries);
        };
        pos = json_ws(bytes, key_end);
        if bytes.get(pos) != Some(&b':') {
            return Some(entries);
        }
        let value_start = json_ws(bytes, pos + 1);
        let Some(value_end) = json_skip(bytes, value_start) else {
            return Some(entries);
        };
        pos = value_end;
        entries.push((key, value_start..pos));
        pos = json_ws(bytes, pos);
        match bytes.get(pos) {
            Some(b',') => pos = json_ws(bytes, pos + 1),
            _ => return Some(entries),
        }
    }
}

fn json_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes
        .get(pos)
        .is_some_and(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
    {
        pos += 1;
    }
    pos
}

/// The end of the JSON string starting at `pos` (its opening quote).
fn json_string_end(bytes: &[u8], mut pos: usize) -> Option<usize> {
    pos += 1;
    loop {
        match bytes.get(pos)? {
            b'\\' => pos += 2,
            b'"' => return Some(pos + 1),
            _ => pos += 1,
        }
    }
}

/// The end of the JSON value starting at `pos`, however deeply nested (no recursion).
fn json_skip(bytes: &[u8], pos: usize) -> Option<usize> {
    match bytes.get(pos)? {
        b'"' => json_string_end(bytes, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut pos = pos;
            loop {
                match bytes.get(pos)? {
                    b'"' => {
                        pos = json_string_end(bytes, pos)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(pos + 1);
                        }
                    }
                    _ => {}
                }
                pos += 1;
            }
        }
        _ => {
            let mut end = pos;
            while bytes.get(end).is_some_and(|byte| {
                !matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            }) {
                end += 1;
            }
            (end > pos).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests;
