//! Unit tests of URL parsing and redaction (no database needed).

use std::path::PathBuf;

use super::url::{Target, parse, redact};
use super::{Store, StoreError, StoreOptions, new_id, now_ms};

#[test]
fn postgres_urls_select_postgres() {
    for url in [
        "postgres://u:p@localhost/db",
        "postgresql://localhost:5432/db?sslmode=disable",
    ] {
        assert_eq!(parse(url).unwrap(), Target::Postgres(url.to_owned()));
    }
}

#[test]
fn sqlite_urls_and_paths_select_sqlite() {
    let cases = [
        (
            "sqlite:///var/lib/agenthub/agenthub.db",
            "/var/lib/agenthub/agenthub.db",
        ),
        ("sqlite://data/agenthub.db", "data/agenthub.db"),
        ("sqlite:agenthub.db", "agenthub.db"),
        ("/tmp/agenthub.db", "/tmp/agenthub.db"),
        ("agenthub.db", "agenthub.db"),
        (
            "file:agenthub.db?cache=private",
            "file:agenthub.db?cache=private",
        ),
    ];
    for (url, path) in cases {
        let target = parse(url).unwrap();
        assert_eq!(target, Target::Sqlite(PathBuf::from(path)), "{url}");
    }
}

#[test]
fn unsupported_urls_are_rejected_with_the_password_redacted() {
    for url in [
        "mysql://root:hunter2@localhost/db",
        "sqlite://",
        ":memory:",
        "sqlite::memory:",
        "file:x?mode=memory",
    ] {
        let err = parse(url).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidUrl { .. }),
            "{url}: {err:?}"
        );
        assert!(!format!("{err:?} {err}").contains("hunter2"), "{err:?}");
    }
}

#[test]
fn redact_hides_passwords() {
    let cases = [
        (
            "postgres://user:hunter2@db:5432/hub",
            "postgres://user:***@db:5432/hub",
        ),
        (
            "postgres://user:p%40ss@db/hub?x=1",
            "postgres://user:***@db/hub?x=1",
        ),
        ("postgres://user@db/hub", "postgres://user@db/hub"),
        (
            "postgres://db/hub?password=hunter2&x=1",
            "postgres://db/hub?password=***&x=1",
        ),
        (
            "postgres://db/hub?user=u&password=hunter2",
            "postgres://db/hub?user=u&password=***",
        ),
        ("/tmp/agenthub.db", "/tmp/agenthub.db"),
    ];
    for (url, redacted) in cases {
        assert_eq!(redact(url), redacted);
    }
}

#[test]
fn store_debug_redacts_the_password() {
    let store = Store::connect(
        "postgres://agenthub:hunter2@127.0.0.1:1/hub",
        &StoreOptions::default(),
    )
    .unwrap();
    let debug = format!("{store:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("agenthub:***@127.0.0.1:1/hub"), "{debug}");
}

#[test]
fn ids_are_uuid_v7_and_sort_by_creation() {
    let first = new_id();
    let second = new_id();
    let parsed = uuid::Uuid::parse_str(&first).unwrap();
    assert_eq!(parsed.get_version_num(), 7);
    assert!(first < second, "{first} {second}");
}

#[test]
fn now_ms_is_unix_milliseconds() {
    let now = now_ms();
    // 2025-01-01 .. 2100-01-01
    assert!(
        (1_735_689_600_000..4_102_444_800_000).contains(&now),
        "{now}"
    );
}

/// Records the SQL texts a connection prepared for its statement cache.
#[derive(Clone, Default)]
pub(super) struct Prepared(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Prepared {
    /// How many texts starting with `prefix` (`"UPDATE"`, `"INSERT"`, …) were prepared.
    pub(super) fn starting_with(&self, prefix: &str) -> usize {
        let texts = self.0.lock().unwrap();
        texts.iter().filter(|sql| sql.starts_with(prefix)).count()
    }

    pub(super) fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl diesel::connection::Instrumentation for Prepared {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if let diesel::connection::InstrumentationEvent::CacheQuery { sql, .. } = event {
            self.0.lock().unwrap().push(sql.to_string());
        }
    }
}
