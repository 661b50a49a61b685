//! Attachments: bytes streamed to disk under the data directory as
//! `uploads/YYYY/MM/<id>`, metadata in the database. Step results reference file ids or
//! external links.

pub mod model;

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::accounts::Actor;
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::store::{new_id, now_ms};

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
    let name = name.trim();
    if name.is_empty() || name.len() > 255 || name.contains(['/', '\\', '\0']) {
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
