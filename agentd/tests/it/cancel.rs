//! Stopping a running step: a revoked shell step gets SIGTERM to its whole process
//! group, SIGKILL after the grace period, and what it prints meanwhile is still sent.

use std::path::Path;
use std::time::Duration;

use agenthub_protocol::{ClientFrame, ServerFrame, StepRevoked};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Agentd, FakeHub, claim_ok, spawn, step_ready};

/// Whether process `pid` still runs (a zombie waiting to be reaped does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// The pids a step wrote, one a line, once `count` are there (10 s at most).
async fn pids(path: &Path, count: usize) -> Vec<u32> {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path) {
            let pids: Vec<u32> = text
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect();
            if pids.len() >= count {
                return pids;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the step did not write {count} pids to {}", path.display());
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_shell_step_and_every_process_it_started_are_stopped() {
    let mut hub = FakeHub::start().await;
    let agentd = Agentd::new();
    agentd.write_config("cancel_grace_secs = 2\n");
    agentd.login(&hub.url);
    let _child = spawn(&agentd, &["run", "--no-notify"]);
    let mut conn = hub.accept().await;
    conn.welcome(0, 60_000).await;
    let step_id = Uuid::now_v7();
    // The shell cleans up on SIGTERM; one grandchild stops on SIGTERM, another ignores
    // it (only SIGKILL ends it), and a great-grandchild sits under a subshell.
    let command = "trap 'echo cleaning up; exit 143' TERM; \
        echo $$ >> pids.txt; \
        sleep 300 & echo $! >> pids.txt; \
        sh -c 'trap \"\" TERM; echo $$ >> pids.txt; sleep 300; sleep 300' & \
        (sleep 300 & echo $! >> pids.txt; wait) & \
        echo working; wait";
    conn.send(step_ready(1, step_id, "shell", json!({"command": command})))
        .await;
    let ClientFrame::StepClaim(claim) = conn.recv_significant().await else {
        panic!("expected a claim");
    };
    conn.send(claim_ok(claim.id, 1)).await;
    let pid_file = agentd.work_dir(step_id).join("pids.txt");
    let pids = pids(&pid_file, 4).await;
    assert!(pids.iter().all(|pid| running(*pid)), "{pids:?}");

    let mut logs = String::new();
    // The step is running: wait for its first line before revoking it.
    while !logs.contains("working") {
        match conn.recv().await {
            ClientFrame::StepLog(log) => {
                logs.push_str(&log.text);
                conn.send(ServerFrame::Ok(agenthub_protocol::OkReply::new(log.id)))
                    .await;
            }
            ClientFrame::StepProgress(_) | ClientFrame::Ack(_) | ClientFrame::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    conn.send(ServerFrame::StepRevoked(StepRevoked {
        seq: 2,
        step_id,
        task_id: Uuid::now_v7(),
        attempt: 1,
        reason: "task cancelled".into(),
    }))
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !logs.contains("cleaning up") {
        let frame = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .expect("the step's last words arrive");
        match frame {
            ClientFrame::StepLog(log) => {
                logs.push_str(&log.text);
                conn.send(ServerFrame::Ok(agenthub_protocol::OkReply::new(log.id)))
                    .await;
            }
            ClientFrame::StepProgress(_) | ClientFrame::Ack(_) | ClientFrame::Pong(_) => {}
            other => panic!("a revoked step reports nothing, got {other:?}"),
        }
    }
    // The grace period is 2 s: the process ignoring SIGTERM is killed after it.
    for _ in 0..100 {
        if pids.iter().all(|pid| !running(*pid)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivors: Vec<u32> = pids.iter().copied().filter(|pid| running(*pid)).collect();
    assert!(survivors.is_empty(), "still running: {survivors:?}");
    // Nothing is submitted or failed for the revoked attempt.
    while let Ok(frame) = tokio::time::timeout(Duration::from_secs(1), conn.recv()).await {
        assert!(
            matches!(
                frame,
                ClientFrame::StepLog(_)
                    | ClientFrame::StepProgress(_)
                    | ClientFrame::Ack(_)
                    | ClientFrame::Pong(_)
            ),
            "a revoked step reports nothing, got {frame:?}"
        );
    }
}
