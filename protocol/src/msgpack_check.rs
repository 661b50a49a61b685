//! A linear, allocation-bounded structural check of MessagePack input, run before serde
//! sees it: every length prefix must fit in the bytes that remain, nesting must stay
//! under the limit, every map key must be a string, and exactly one value must fill the
//! input.

use rmp::Marker;

/// What one MessagePack value header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) kind: Kind,
    /// Payload bytes that follow the header (string, bin or ext contents, scalars).
    pub(crate) skip: u64,
    /// Values that follow inside it (2 per entry for a map).
    pub(crate) items: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Map,
    Array,
    /// Integers, floats, nil, booleans, bin and ext.
    Other,
}

/// Reads the header of the value at `*pos` and moves `*pos` past it (not past its
/// payload). Checks that the payload and the announced items fit in what remains.
pub(crate) fn head(bytes: &[u8], pos: &mut usize) -> Result<Head, String> {
    let Some(&byte) = bytes.get(*pos) else {
        return Err(format!("truncated input: expected a value at byte {pos}"));
    };
    *pos += 1;
    let scalar = |skip| (Kind::Other, skip, 0);
    let (kind, skip, items) = match Marker::from_u8(byte) {
        Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
            scalar(0)
        }
        Marker::U8 | Marker::I8 => scalar(1),
        Marker::U16 | Marker::I16 => scalar(2),
        Marker::U32 | Marker::I32 | Marker::F32 => scalar(4),
        Marker::U64 | Marker::I64 | Marker::F64 => scalar(8),
        Marker::FixStr(len) => (Kind::Str, u64::from(len), 0),
        Marker::Str8 => (Kind::Str, read_len(bytes, pos, 1)?, 0),
        Marker::Str16 => (Kind::Str, read_len(bytes, pos, 2)?, 0),
        Marker::Str32 => (Kind::Str, read_len(bytes, pos, 4)?, 0),
        Marker::Bin8 => scalar(read_len(bytes, pos, 1)?),
        Marker::Bin16 => scalar(read_len(bytes, pos, 2)?),
        Marker::Bin32 => scalar(read_len(bytes, pos, 4)?),
        Marker::FixArray(len) => (Kind::Array, 0, u64::from(len)),
        Marker::Array16 => (Kind::Array, 0, read_len(bytes, pos, 2)?),
        Marker::Array32 => (Kind::Array, 0, read_len(bytes, pos, 4)?),
        Marker::FixMap(len) => (Kind::Map, 0, 2 * u64::from(len)),
        Marker::Map16 => (Kind::Map, 0, 2 * read_len(bytes, pos, 2)?),
        Marker::Map32 => (Kind::Map, 0, 2 * read_len(bytes, pos, 4)?),
        Marker::FixExt1 => scalar(2),
        Marker::FixExt2 => scalar(3),
        Marker::FixExt4 => scalar(5),
        Marker::FixExt8 => scalar(9),
        Marker::FixExt16 => scalar(17),
        Marker::Ext8 => scalar(read_len(bytes, pos, 1)? + 1),
        Marker::Ext16 => scalar(read_len(bytes, pos, 2)? + 1),
        Marker::Ext32 => scalar(read_len(bytes, pos, 4)? + 1),
        Marker::Reserved => return Err(format!("invalid marker 0xc1 at byte {}", *pos - 1)),
    };
    let left = (bytes.len() - *pos) as u64;
    if skip > left {
        return Err(format!(
            "length prefix at byte {} announces {skip} bytes but only {left} remain",
            *pos - 1
        ));
    }
    // Every item takes at least one byte: a larger count cannot be honest.
    if items > left {
        return Err(format!(
            "container at byte {} announces {items} items but only {left} bytes remain",
            *pos - 1
        ));
    }
    Ok(Head { kind, skip, items })
}

/// Moves `*pos` past the whole value that starts there, nested values included, without
/// recursion and without a limit on nesting.
pub(crate) fn skip_value(bytes: &[u8], pos: &mut usize) -> Result<(), String> {
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let head = head(bytes, pos)?;
        *pos += head.skip as usize;
        pending += head.items;
    }
    Ok(())
}

/// What is wrong with the input, in words for an `error` frame.
pub(crate) fn check(bytes: &[u8], max_depth: usize) -> Result<(), String> {
    let mut pos = 0usize;
    // Each open container: items still to read, and whether it is a map (whose items
    // alternate key, value). The top-level value counts as an array of one.
    let mut open: Vec<(u64, bool)> = Vec::with_capacity(8);
    open.push((1, false));
    while let Some((remaining_items, is_map)) = open.last_mut() {
        if *remaining_items == 0 {
            open.pop();
            continue;
        }
        // A map's item count is even; a key is read while it still is.
        let is_key = *is_map && *remaining_items % 2 == 0;
        *remaining_items -= 1;
        let start = pos;
        let head = head(bytes, &mut pos)?;
        if is_key && head.kind != Kind::Str {
            return Err(format!("map key at byte {start} is not a string"));
        }
        pos += head.skip as usize;
        if head.items > 0 {
            if open.len() > max_depth {
                return Err(format!("nesting deeper than {max_depth} levels"));
            }
            open.push((head.items, head.kind == Kind::Map));
        }
    }
    if pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the frame",
            bytes.len() - pos
        ));
    }
    Ok(())
}

fn read_len(bytes: &[u8], pos: &mut usize, width: usize) -> Result<u64, String> {
    let Some(raw) = bytes.get(*pos..*pos + width) else {
        return Err(format!(
            "truncated input: length prefix at byte {pos} is cut off"
        ));
    };
    *pos += width;
    Ok(raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Nesting depth check for JSON text (brackets outside strings), so both codecs share
/// one limit.
pub(crate) fn check_json_depth(bytes: &[u8], max_depth: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(format!("nesting deeper than {max_depth} levels"));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}
