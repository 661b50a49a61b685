//! A linear, allocation-bounded structural check of MessagePack input, run before serde
//! sees it: every length prefix must fit in the bytes that remain, nesting must stay
//! under the limit, and exactly one value must fill the input.

use rmp::Marker;

/// What is wrong with the input, in words for an `error` frame.
pub(crate) fn check(bytes: &[u8], max_depth: usize) -> Result<(), String> {
    let mut pos = 0usize;
    // Items still to read in each open container; the top-level value counts as one.
    let mut open: Vec<u64> = Vec::with_capacity(8);
    open.push(1);
    while let Some(remaining_items) = open.last_mut() {
        if *remaining_items == 0 {
            open.pop();
            continue;
        }
        *remaining_items -= 1;
        let Some(&byte) = bytes.get(pos) else {
            return Err(format!("truncated input: expected a value at byte {pos}"));
        };
        pos += 1;
        let (skip, items) = match Marker::from_u8(byte) {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(len) => (u64::from(len), 0),
            Marker::Str8 | Marker::Bin8 => (read_len(bytes, &mut pos, 1)?, 0),
            Marker::Str16 | Marker::Bin16 => (read_len(bytes, &mut pos, 2)?, 0),
            Marker::Str32 | Marker::Bin32 => (read_len(bytes, &mut pos, 4)?, 0),
            Marker::FixArray(len) => (0, u64::from(len)),
            Marker::Array16 => (0, read_len(bytes, &mut pos, 2)?),
            Marker::Array32 => (0, read_len(bytes, &mut pos, 4)?),
            Marker::FixMap(len) => (0, 2 * u64::from(len)),
            Marker::Map16 => (0, 2 * read_len(bytes, &mut pos, 2)?),
            Marker::Map32 => (0, 2 * read_len(bytes, &mut pos, 4)?),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::Ext8 => (read_len(bytes, &mut pos, 1)? + 1, 0),
            Marker::Ext16 => (read_len(bytes, &mut pos, 2)? + 1, 0),
            Marker::Ext32 => (read_len(bytes, &mut pos, 4)? + 1, 0),
            Marker::Reserved => return Err(format!("invalid marker 0xc1 at byte {}", pos - 1)),
        };
        let left = (bytes.len() - pos) as u64;
        if skip > left {
            return Err(format!(
                "length prefix at byte {} announces {skip} bytes but only {left} remain",
                pos - 1
            ));
        }
        pos += skip as usize;
        if items > 0 {
            // Every item takes at least one byte: a larger count cannot be honest.
            if items > left {
                return Err(format!(
                    "container at byte {} announces {items} items but only {left} bytes remain",
                    pos - 1
                ));
            }
            if open.len() > max_depth {
                return Err(format!("nesting deeper than {max_depth} levels"));
            }
            open.push(items);
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
