//! Unit tests of `state`.

use super::*;

#[test]
fn position_is_per_hub_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state"), &dir.path().join("work")).unwrap();
    assert_eq!(state.position("http://a").unwrap(), 0);
    state.set_position("http://a", 42).unwrap();
    let reopened = State::open(&dir.path().join("state"), &dir.path().join("work")).unwrap();
    assert_eq!(reopened.position("http://a").unwrap(), 42);
    assert_eq!(reopened.position("http://b").unwrap(), 0);
}

#[test]
fn journal_keeps_entries_until_removed() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state"), &dir.path().join("work")).unwrap();
    let step_id = Uuid::now_v7();
    let entry = JournalEntry::Submit {
        step_id,
        attempt: 2,
        result: serde_json::json!({"ok": true}),
        summary: Some("done".into()),
        files: vec![],
        usage: None,
        check: None,
    };
    state.journal_add(&entry).unwrap();
    assert_eq!(state.journal().unwrap(), vec![entry]);
    state.journal_remove(step_id, 2).unwrap();
    assert!(state.journal().unwrap().is_empty());
}

#[cfg(unix)]
#[test]
fn private_files_are_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("secret");
    write_private(&path, b"x").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}
