//! Rows and queries of uploaded files.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::files;
use crate::store::Db;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = files, treat_none_as_default_value = false)]
pub struct FileRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    /// Relative to the data directory.
    pub path: String,
    pub uploaded_by: String,
    pub created_at: i64,
}

pub async fn insert_file(db: &mut Db<'_>, row: &FileRow) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(files::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn find_file(
    db: &mut Db<'_>,
    workspace_id: &str,
    file_id: &str,
) -> QueryResult<Option<FileRow>> {
    crate::db!(db, |conn| {
        files::table
            .filter(
                files::id
                    .eq(file_id)
                    .and(files::workspace_id.eq(workspace_id)),
            )
            .select(FileRow::as_select())
            .first(conn)
            .await
            .optional()
    })
}

/// The files of `workspace_id` among `file_ids` (ids of other workspaces, or of no
/// file, are left out).
pub async fn find_files(
    db: &mut Db<'_>,
    workspace_id: &str,
    file_ids: &[String],
) -> QueryResult<Vec<FileRow>> {
    crate::db!(db, |conn| {
        files::table
            .filter(
                files::id
                    .eq_any(file_ids)
                    .and(files::workspace_id.eq(workspace_id)),
            )
            .select(FileRow::as_select())
            .load(conn)
            .await
    })
}

/// Which of `paths` (relative to the data directory) a file row of any workspace holds:
/// the start-up cleanup asks about the whole file store, which workspaces share.
pub async fn existing_paths(db: &mut Db<'_>, paths: &[String]) -> QueryResult<Vec<String>> {
    crate::db!(db, |conn| {
        files::table
            .filter(files::path.eq_any(paths))
            .select(files::path)
            .load(conn)
            .await
    })
}
