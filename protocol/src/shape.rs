//! The outer shape of a frame, read before serde: the top-level map's entries, found
//! without decoding (or recursing into) their values. This is how the hub tells a frame
//! (a map with a string `type`) from anything else, and how it reads the request `id` of
//! a frame it refuses, however deep or broken the rest of it is.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use crate::Codec;
use crate::msgpack_check::{self, Kind};

/// Why the input is not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotAFrame {
    /// The top-level value is not a map (an array of positional values, a string, …).
    NotAMap(&'static str),
    /// The `type` field is not a string (e.g. an integer).
    TypeNotAString,
    /// A key appears twice in the frame's map.
    DuplicateKey(String),
}

impl NotAFrame {
    pub(crate) fn message(&self) -> String {
        match self {
            NotAFrame::NotAMap(what) => {
                format!("a frame is a map with named fields and a string `type`, not {what}")
            }
            NotAFrame::TypeNotAString => "the `type` field must be a string".to_string(),
            NotAFrame::DuplicateKey(key) => format!("the key `{key}` appears twice"),
        }
    }
}

/// Checks that the input is a map whose `type`, when present, is a string, and in which
/// no key appears twice. Input too broken to scan passes: the decoder reports what is
/// wrong with it.
pub(crate) fn check(codec: Codec, bytes: &[u8]) -> Result<(), NotAFrame> {
    check_outer(codec, bytes)?;
    let mut seen: HashSet<Cow<'_, [u8]>> = HashSet::new();
    let mut duplicate = None;
    entries(codec, bytes, |key, _| {
        if seen.contains(&key) {
            duplicate = Some(String::from_utf8_lossy(&key).into_owned());
            true
        } else {
            seen.insert(key);
            false
        }
    });
    match duplicate {
        Some(key) => Err(NotAFrame::DuplicateKey(key)),
        None => Ok(()),
    }
}

fn check_outer(codec: Codec, bytes: &[u8]) -> Result<(), NotAFrame> {
    match codec {
        Codec::MsgPack => {
            let mut pos = 0;
            let Ok(head) = msgpack_check::head(bytes, &mut pos) else {
                return Ok(());
            };
            match head.kind {
                Kind::Map => {}
                Kind::Array => return Err(NotAFrame::NotAMap("an array")),
                Kind::Str => return Err(NotAFrame::NotAMap("a string")),
                Kind::Other => return Err(NotAFrame::NotAMap("a scalar")),
            }
            match field(codec, bytes, "type") {
                Some(range) => {
                    let mut pos = range.start;
                    match msgpack_check::head(bytes, &mut pos) {
                        Ok(head) if head.kind != Kind::Str => Err(NotAFrame::TypeNotAString),
                        _ => Ok(()),
                    }
                }
                None => Ok(()),
            }
        }
        Codec::Json => {
            let start = skip_ws(bytes, 0);
            match bytes.get(start) {
                Some(b'{') | None => {}
                Some(b'[') => return Err(NotAFrame::NotAMap("an array")),
                Some(b'"') => return Err(NotAFrame::NotAMap("a string")),
                Some(_) => return Err(NotAFrame::NotAMap("a scalar")),
            }
            match field(codec, bytes, "type") {
                Some(range) if bytes.get(range.start) != Some(&b'"') => {
                    Err(NotAFrame::TypeNotAString)
                }
                _ => Ok(()),
            }
        }
    }
}

/// The top-level `id` of a map, when it is an unsigned integer.
pub(crate) fn request_id(codec: Codec, bytes: &[u8]) -> Option<u64> {
    match codec {
        Codec::MsgPack => {
            let range = field(codec, bytes, "id")?;
            rmp_serde::from_slice::<u64>(&bytes[range]).ok()
        }
        Codec::Json => {
            let range = field(codec, bytes, "id")?;
            serde_json::from_slice::<u64>(&bytes[range]).ok()
        }
    }
}

/// The top-level `type` of a map, when it is a string.
pub(crate) fn type_name(codec: Codec, bytes: &[u8]) -> Option<String> {
    match codec {
        Codec::MsgPack => {
            let range = field(codec, bytes, "type")?;
            rmp_serde::from_slice::<String>(&bytes[range]).ok()
        }
        Codec::Json => {
            let range = field(codec, bytes, "type")?;
            serde_json::from_slice::<String>(&bytes[range]).ok()
        }
    }
}

/// The bytes of the value of `key` in the top-level map (entries after it need not be
/// well-formed).
pub(crate) fn field(codec: Codec, bytes: &[u8], key: &str) -> Option<Range<usize>> {
    let mut found = None;
    entries(codec, bytes, |entry_key, value| {
        if *entry_key == *key.as_bytes() {
            found = Some(value);
        }
        found.is_some()
    });
    found
}

/// Calls `visit(key, value bytes)` for each entry of the top-level map, in order, until
/// it returns true or the input stops being scannable. JSON keys are unescaped.
fn entries<'a>(
    codec: Codec,
    bytes: &'a [u8],
    visit: impl FnMut(Cow<'a, [u8]>, Range<usize>) -> bool,
) -> Option<()> {
    match codec {
        Codec::MsgPack => msgpack_entries(bytes, visit),
        Codec::Json => json_entries(bytes, visit),
    }
}

fn msgpack_entries<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(Cow<'a, [u8]>, Range<usize>) -> bool,
) -> Option<()> {
    let mut pos = 0;
    let map = msgpack_check::head(bytes, &mut pos).ok()?;
    if map.kind != Kind::Map {
        return None;
    }
    for _ in 0..map.items / 2 {
        let key_head = msgpack_check::head(bytes, &mut pos).ok()?;
        let key_start = pos;
        pos += key_head.skip as usize;
        let key = Cow::Borrowed(&bytes[key_start..pos]);
        let value_start = pos;
        msgpack_check::skip_value(bytes, &mut pos).ok()?;
        if key_head.kind == Kind::Str && visit(key, value_start..pos) {
            return Some(());
        }
    }
    Some(())
}

fn json_entries<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(Cow<'a, [u8]>, Range<usize>) -> bool,
) -> Option<()> {
    let mut pos = skip_ws(bytes, 0);
    if bytes.get(pos) != Some(&b'{') {
        return None;
    }
    pos = skip_ws(bytes, pos + 1);
    loop {
        if bytes.get(pos) != Some(&b'"') {
            // `}` of an empty or finished map, or not JSON.
            return Some(());
        }
        let key_start = pos;
        pos = skip_json_string(bytes, pos)?;
        let written = &bytes[key_start + 1..pos - 1];
        let key = if written.contains(&b'\\') {
            Cow::Owned(
                serde_json::from_slice::<String>(&bytes[key_start..pos])
                    .ok()?
                    .into_bytes(),
            )
        } else {
            Cow::Borrowed(written)
        };
        pos = skip_ws(bytes, pos);
        if bytes.get(pos) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(bytes, pos + 1);
        pos = skip_json_value(bytes, value_start)?;
        if visit(key, value_start..pos) {
            return Some(());
        }
        pos = skip_ws(bytes, pos);
        if bytes.get(pos) != Some(&b',') {
            return Some(());
        }
        pos = skip_ws(bytes, pos + 1);
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

/// The position after the string that starts (with `"`) at `pos`.
fn skip_json_string(bytes: &[u8], mut pos: usize) -> Option<usize> {
    pos += 1;
    loop {
        match bytes.get(pos)? {
            b'\\' => pos += 2,
            b'"' => return Some(pos + 1),
            _ => pos += 1,
        }
    }
}

/// The position after the value that starts at `pos`; containers are skipped by counting
/// brackets outside strings, without recursion.
fn skip_json_value(bytes: &[u8], mut pos: usize) -> Option<usize> {
    match bytes.get(pos)? {
        b'"' => skip_json_string(bytes, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match bytes.get(pos)? {
                    b'"' => {
                        pos = skip_json_string(bytes, pos)?;
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
            let start = pos;
            while !matches!(
                bytes.get(pos),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                pos += 1;
            }
            (pos > start).then_some(pos)
        }
    }
}
