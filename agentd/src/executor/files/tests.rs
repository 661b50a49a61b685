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
