//! Attachments: bytes streamed to disk under the data directory as
//! `uploads/YYYY/MM/<id>`, metadata in the database. Step results reference file ids or
//! external links.

pub mod model;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::accounts::Actor;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::store::{Store, new_id, now_ms};

pub use model::FileRow;

/// Streams an upload to disk, enforcing the size limit while reading; nothing of an
/// oversized or interrupted upload stays behind.
pub async fn upload<S, E>(
    ctx: &Ctx,
    actor: &Actor,
    name: &str,
    content_type: &str,
    mut body: S,
) -> Result<FileRow>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let name = &sanitize_name(name);
    if name.is_empty() || name.len() > 255 || name.contains(['/', '\\']) {
        return Err(Error::invalid_field(
            "name",
            "a file name must be 1-255 characters without slashes",
        ));
    }
    let id = new_id();
    let now = now_ms();
    let month = time::OffsetDateTime::from_unix_timestamp(now / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let relative = PathBuf::from("uploads")
        .join(format!("{:04}", month.year()))
        .join(format!("{:02}", u8::from(month.month())))
        .join(&id);
    let absolute = ctx.settings.data_dir.join(&relative);
    let parent = absolute.parent().expect("upload path has a parent");
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|err| Error::internal(format!("creating {}: {err}", parent.display())))?;
    let partial = absolute.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(|err| Error::internal(format!("creating {}: {err}", partial.display())))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let max = ctx.settings.max_upload_bytes;
    let outcome: Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|err| Error::bad_request(format!("the upload was interrupted: {err}")))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(Error::TooLarge(format!(
                    "uploads are limited to {max} bytes"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|err| Error::internal(format!("writing upload: {err}")))?;
        }
        file.sync_all()
            .await
            .map_err(|err| Error::internal(format!("syncing upload: {err}")))?;
        Ok(())
    }
    .await;
    if let Err(err) = outcome {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(err);
    }
    tokio::fs::rename(&partial, &absolute)
        .await
        .map_err(|err| Error::internal(format!("storing upload: {err}")))?;
    let row = FileRow {
        id,
        workspace_id: actor.workspace_id().to_string(),
        name: name.to_string(),
        content_type: content_type.to_string(),
        size_bytes: size as i64,
        sha256: hex::encode(hasher.finalize()),
        path: relative.to_string_lossy().into_owned(),
        uploaded_by: actor.describe(),
        created_at: now,
    };
    let inserted = ctx
        .store
        .transaction(async |db| Ok::<_, Error>(model::insert_file(db, &row).await?))
        .await;
    if let Err(err) = inserted {
        let _ = tokio::fs::remove_file(&absolute).await;
        return Err(err);
    }
    Ok(row)
}

/// Files younger than this are left alone by [`remove_orphans`]: another hub sharing the
/// file store may be writing them, or about to insert their row.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(60 * 60);

/// What [`remove_orphans`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// `.partial` files of uploads that never finished.
    pub partial: usize,
    /// Stored files that no database row refers to.
    pub orphans: usize,
}

/// Removes what crashes mid-upload leave under `uploads/`: `.partial` files and files no
/// row refers to, when they were last modified more than `grace` ago (hubs that share one
/// file store run this at start-up while others serve: an upload in progress elsewhere
/// is younger than the grace period). Files it cannot read or remove are logged and left.
pub async fn remove_orphans(store: &Store, data_dir: &Path, grace: Duration) -> Result<Cleaned> {
    let uploads = data_dir.join("uploads");
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let files = tokio::task::spawn_blocking(move || old_files(&uploads, cutoff))
        .await
        .map_err(|err| Error::internal(format!("listing uploads: {err}")))?;
    let mut cleaned = Cleaned::default();
    let mut stored: Vec<(PathBuf, String)> = Vec::new();
    for path in files {
        if path.extension().is_some_and(|ext| ext == "partial") {
            if remove(&path).await {
                cleaned.partial += 1;
            }
            continue;
        }
        let Ok(relative) = path.strip_prefix(data_dir) else {
            continue;
        };
        stored.push((path.clone(), relative.to_string_lossy().into_owned()));
    }
    for chunk in stored.chunks(500) {
        let relatives: Vec<String> = chunk.iter().map(|(_, relative)| relative.clone()).collect();
        let existing = store
            .read(async |db| Ok::<_, Error>(model::existing_paths(db, &relatives).await?))
            .await?;
        for (path, relative) in chunk {
            if !existing.contains(relative) && remove(path).await {
                cleaned.orphans += 1;
            }
        }
    }
    if cleaned != Cleaned::default() {
        tracing::info!(
            partial = cleaned.partial,
            orphans = cleaned.orphans,
            "removed files left behind by interrupted uploads"
        );
    }
    Ok(cleaned)
}

/// Regular files under `uploads/YYYY/MM/` last modified before `cutoff`.
fn old_files(uploads: &Path, cutoff: SystemTime) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![(uploads.to_path_buf(), 0)];
    while let Some((dir, level)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() && level < 2 {
                dirs.push((entry.path(), level + 1));
            } else if meta.is_file()
                && level == 2
                && meta.modified().is_ok_and(|modified| modified < cutoff)
            {
                found.push(entry.path());
            }
        }
    }
    found
}

async fn remove(path: &Path) -> bool {
    match tokio::fs::remove_file(path).await {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove a left-over upload");
            false
        }
    }
}

/// A file name as stored: each control character (CR, LF, NUL, …) becomes `_`, and
/// surrounding white space goes.
pub fn sanitize_name(name: &str) -> String {
    name.trim()
        .chars()
        .map(|ch| if ch.is_control() { '_' } else { ch })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The `Content-Disposition` of a download (RFC 6266): `attachment`, an ASCII `filename`
/// for old clients (other characters, quotes and backslashes become `_`) and the exact
/// name as UTF-8 in `filename*` (RFC 8187 percent-encoding). Valid for any stored name.
pub fn content_disposition(name: &str) -> String {
    const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let fallback: String = name
        .chars()
        .map(|ch| {
            if (ch.is_ascii_graphic() || ch == ' ') && ch != '"' && ch != '\\' {
                ch
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    )
}

/// The `Repr-Digest` of a download (RFC 9530): `sha-256=:BASE64:` from the stored hex
/// SHA-256.
pub fn repr_digest(sha256_hex: &str) -> String {
    use base64::Engine;
    let bytes = hex::decode(sha256_hex).unwrap_or_default();
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A file of the caller's workspace and where its bytes are.
pub async fn find(ctx: &Ctx, actor: &Actor, file_id: &str) -> Result<(FileRow, PathBuf)> {
    let row = ctx
        .store
        .read(async |db| {
            model::find_file(db, actor.workspace_id(), file_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("file `{file_id}`")))
        })
        .await?;
    let path = ctx.settings.data_dir.join(&row.path);
    Ok((row, path))
}

/// The files of the caller's workspace among `file_ids`, in the order asked; an id of no
/// such file is left out (a step may name a link or a file of another hub).
pub async fn describe(ctx: &Ctx, actor: &Actor, file_ids: &[String]) -> Result<Vec<FileRow>> {
    if file_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = ctx
        .store
        .read(async |db| {
            Ok::<_, Error>(model::find_files(db, actor.workspace_id(), file_ids).await?)
        })
        .await?;
    rows.sort_by_key(|row| file_ids.iter().position(|id| *id == row.id));
    Ok(rows)
}
