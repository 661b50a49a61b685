//! Unit tests of `files`.

use serde_json::json;

use super::*;

fn step_with(input: serde_json::Value) -> StepInfo {
    serde_json::from_value(json!({
        "step_id": "0190d0f0-0000-7000-8000-000000000001",
        "task_id": "0190d0f0-0000-7000-8000-000000000002",
        "task_title": "t", "key": "k", "title": "s", "attempt": 1,
        "approval_level": 0, "input": input,
    }))
    .unwrap()
}

#[test]
fn declared_outputs_must_be_relative_paths_or_globs() {
    assert_eq!(
        declared_outputs(&step_with(json!({}))).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        declared_outputs(&step_with(
            json!({"outputs": ["dist/*.tar.gz", "report.md"]})
        ))
        .unwrap(),
        ["dist/*.tar.gz", "report.md"]
    );
    let outside = declared_outputs(&step_with(json!({"outputs": ["../secrets.txt"]}))).unwrap_err();
    assert_eq!(
        outside.reason,
        "input.outputs names `../secrets.txt`, which is not inside the work dir (a relative path without `..`)"
    );
    assert!(declared_outputs(&step_with(json!({"outputs": ["/etc/passwd"]}))).is_err());
    assert!(declared_outputs(&step_with(json!({"outputs": "report.md"}))).is_err());
    assert!(declared_outputs(&step_with(json!({"outputs": [3]}))).is_err());
    let bad_glob = declared_outputs(&step_with(json!({"outputs": ["a[.txt"]}))).unwrap_err();
    assert!(
        bad_glob.reason.contains("not a valid glob"),
        "{}",
        bad_glob.reason
    );
}

#[test]
fn outputs_are_matched_inside_the_work_dir_only() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work [1]");
    std::fs::create_dir_all(work.join("dist")).unwrap();
    std::fs::write(work.join("dist/a.tar.gz"), "a").unwrap();
    std::fs::write(work.join("dist/b.tar.gz"), "b").unwrap();
    std::fs::write(work.join("report.md"), "r").unwrap();
    let files = matching_files(&work, &["dist/*.tar.gz".into(), "report.md".into()]).unwrap();
    assert_eq!(
        files,
        [
            work.join("dist/a.tar.gz"),
            work.join("dist/b.tar.gz"),
            work.join("report.md")
        ]
    );
    let missing = matching_files(&work, &["*.pdf".into()]).unwrap_err();
    assert_eq!(
        missing.reason,
        "the step declares the output `*.pdf` but no file matches it"
    );
    #[cfg(unix)]
    {
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), work.join("link.txt")).unwrap();
        let escaped = matching_files(&work, &["link.txt".into()]).unwrap_err();
        assert!(
            escaped.reason.contains("leads outside the work dir"),
            "{}",
            escaped.reason
        );
    }
}

fn pending(attempt: u32, uploaded: &[Option<&str>]) -> PendingUploads {
    PendingUploads {
        step: step_with(json!({})),
        attempt,
        result: json!({"text": "done"}),
        summary: Some("done".into()),
        files: vec!["attached-before".into()],
        usage: None,
        uploads: uploaded
            .iter()
            .enumerate()
            .map(|(index, file_id)| Upload {
                path: PathBuf::from(format!("out-{index}.txt")),
                file_id: file_id.map(str::to_string),
            })
            .collect(),
    }
}

#[test]
fn a_record_left_in_a_work_dir_is_found_and_removed_only_for_its_attempt() {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("step");
    std::fs::create_dir_all(&work).unwrap();
    let record = pending(2, &[Some("f1"), None]);
    record.save(&work).unwrap();
    std::fs::create_dir_all(root.path().join("other")).unwrap();
    assert_eq!(PendingUploads::left_in(root.path()), vec![record.clone()]);
    PendingUploads::remove(&work, 1);
    assert_eq!(
        PendingUploads::read(&work),
        Some(record),
        "attempt 1 is not its attempt"
    );
    PendingUploads::remove(&work, 2);
    assert_eq!(PendingUploads::read(&work), None);
    std::fs::write(work.join(UPLOADS_FILE), "{not json").unwrap();
    assert_eq!(PendingUploads::left_in(root.path()), Vec::new());
}

#[test]
fn the_outcome_names_the_files_known_before_then_the_uploads_in_order() {
    let outcome = pending(1, &[Some("f1"), Some("f2")]).outcome();
    assert_eq!(outcome.files, ["attached-before", "f1", "f2"]);
    assert_eq!(outcome.result, json!({"text": "done"}));
    assert!(outcome.outputs.is_empty());
}
