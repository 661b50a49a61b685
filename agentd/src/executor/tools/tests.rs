//! Unit tests of `tools`.

use super::*;

/// A tool call with the environment agentd gives children.
async fn run(name: &str, input: &Value, work_dir: &Path, limits: ToolLimits) -> ToolOutput {
    super::run(name, input, work_dir, limits, &ChildEnv::inherit(&[])).await
}

fn limits() -> ToolLimits {
    ToolLimits {
        shell_timeout: Duration::from_secs(5),
        max_output_bytes: 4096,
    }
}

#[test]
fn paths_escaping_the_work_dir_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(confine(dir.path(), "a/b.txt").is_ok());
    assert!(confine(dir.path(), "a/../b.txt").is_ok());
    assert!(confine(dir.path(), "../outside.txt").is_err());
    assert!(confine(dir.path(), "a/../../outside.txt").is_err());
    assert!(confine(dir.path(), "/etc/passwd").is_err());
}

#[cfg(unix)]
#[test]
fn a_symlink_out_of_the_work_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let err = confine(dir.path(), "link/secret.txt").unwrap_err();
    assert!(err.contains("outside"), "{err}");
}

#[tokio::test]
async fn write_edit_read_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let wrote = run(
        "write_file",
        &json!({"path": "notes/a.txt", "content": "hello world"}),
        dir.path(),
        limits(),
    )
    .await;
    assert!(!wrote.is_error, "{wrote:?}");
    let edited = run(
        "edit_file",
        &json!({"path": "notes/a.txt", "old_string": "world", "new_string": "team"}),
        dir.path(),
        limits(),
    )
    .await;
    assert!(!edited.is_error, "{edited:?}");
    let read = run(
        "read_file",
        &json!({"path": "notes/a.txt"}),
        dir.path(),
        limits(),
    )
    .await;
    assert_eq!(read, ToolOutput::ok("hello team"));
    let listed = run("list_files", &json!({}), dir.path(), limits()).await;
    assert_eq!(listed.content, "notes/\nnotes/a.txt");
    let missing = run(
        "edit_file",
        &json!({"path": "notes/a.txt", "old_string": "absent", "new_string": "x"}),
        dir.path(),
        limits(),
    )
    .await;
    assert!(missing.is_error);
    let escaped = run(
        "write_file",
        &json!({"path": "../x.txt", "content": "no"}),
        dir.path(),
        limits(),
    )
    .await;
    assert!(escaped.is_error);
    assert!(!dir.path().parent().unwrap().join("x.txt").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn run_shell_reports_exit_code_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let ok = run(
        "run_shell",
        &json!({"command": "echo hi; echo oops >&2; exit 3"}),
        dir.path(),
        limits(),
    )
    .await;
    assert!(ok.is_error);
    assert!(ok.content.contains("exit code: 3"), "{}", ok.content);
    assert!(ok.content.contains("hi"));
    assert!(ok.content.contains("oops"));
    let slow = run(
        "run_shell",
        &json!({"command": "sleep 30"}),
        dir.path(),
        ToolLimits {
            shell_timeout: Duration::from_millis(300),
            max_output_bytes: 100,
        },
    )
    .await;
    assert!(slow.is_error);
    assert!(slow.content.contains("did not finish"), "{}", slow.content);
}
