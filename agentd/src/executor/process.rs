//! A step's child process and everything it started: on Unix the child leads its own
//! process group, and stopping the step stops the whole group, first politely (SIGTERM),
//! then after a grace period for good (SIGKILL). Dropping the handle kills the group, so
//! nothing of a step outlives it (a step that times out or whose worker ends).

use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Child;
use tokio::time::Instant;

/// The process group of a child started with `process_group(0)`.
#[derive(Debug)]
pub struct Group {
    #[cfg(unix)]
    leader: Option<rustix::process::Pid>,
}

impl Group {
    /// The group `child` leads.
    pub fn of(child: &Child) -> Group {
        #[cfg(unix)]
        {
            Group {
                leader: child
                    .id()
                    .and_then(|pid| rustix::process::Pid::from_raw(pid as i32)),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = child;
            Group {}
        }
    }

    /// Asks every process of the group to stop (SIGTERM).
    pub fn terminate(&self) {
        #[cfg(unix)]
        self.signal(rustix::process::Signal::TERM);
    }

    /// Kills every process of the group (SIGKILL).
    pub fn kill(&self) {
        #[cfg(unix)]
        self.signal(rustix::process::Signal::KILL);
    }

    #[cfg(unix)]
    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(leader) = self.leader {
            let _ = rustix::process::kill_process_group(leader, signal);
        }
    }

    /// Whether a process of the group is still there (zombies included: reap the leader
    /// first).
    pub fn alive(&self) -> bool {
        #[cfg(unix)]
        {
            self.leader
                .is_some_and(|leader| rustix::process::test_kill_process_group(leader).is_ok())
        }
        #[cfg(not(unix))]
        false
    }

    /// Stops the group: SIGTERM, up to `grace` for its processes to end, then SIGKILL to
    /// what is left. Returns the leader's exit status.
    pub async fn stop(&self, child: &mut Child, grace: Duration) -> Option<ExitStatus> {
        self.terminate();
        #[cfg(not(unix))]
        let _ = child.start_kill();
        let deadline = Instant::now() + grace;
        let mut status = tokio::time::timeout_at(deadline, child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        while status.is_some() && self.alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        if status.is_none() {
            status = child.wait().await.ok();
        }
        status
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}
