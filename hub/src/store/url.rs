//! Database URL parsing (which backend, which file) and password redaction for logs.

use std::path::PathBuf;

use super::StoreError;

/// Where a database URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// A SQLite file path, or a `file:` URI handed to SQLite unchanged.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, handed to tokio-postgres unchanged.
    Postgres(String),
}

/// Picks the backend from the URL prefix: `postgres://` / `postgresql://` is PostgreSQL;
/// `sqlite://PATH`, `sqlite:PATH`, `file:...` or a plain path is SQLite.
pub(super) fn parse(url: &str) -> Result<Target, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: redact(url),
        reason: reason.to_owned(),
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_owned()));
    }
    let path = if let Some(rest) = url.strip_prefix("sqlite:") {
        rest.strip_prefix("//").unwrap_or(rest)
    } else if url.contains("://") {
        return Err(invalid(
            "unsupported scheme (expected postgres://, postgresql://, sqlite:// or a file path)",
        ));
    } else {
        url
    };
    if path.is_empty() {
        return Err(invalid("empty sqlite path"));
    }
    // The SQLite store keeps a writer and several reader connections; each in-memory
    // connection would be a separate database.
    if path == ":memory:" || path.contains("mode=memory") {
        return Err(invalid(
            "in-memory sqlite databases are not supported; use a file",
        ));
    }
    Ok(Target::Sqlite(PathBuf::from(path)))
}

/// Replaces the password in `scheme://user:password@host/...` and any `password=` query
/// parameter with `***`, so the result can be logged or shown in `Debug` output.
pub(crate) fn redact(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                    None => url.to_owned(),
                },
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    let lower = out.to_ascii_lowercase();
    if let Some(start) = lower.find("password=") {
        let value_start = start + "password=".len();
        let value_end = out[value_start..]
            .find(['&', ' '])
            .map_or(out.len(), |offset| value_start + offset);
        out.replace_range(value_start..value_end, "***");
    }
    out
}
