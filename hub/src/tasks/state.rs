//! The step and task state machines (DESIGN section 4), in one place.
//!
//! Every status change of a step goes through [`StepStatus::check`]; the store applies
//! it as a conditional update on the expected current status, so a concurrent change
//! makes the second writer fail with `conflict` instead of overwriting.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Where a step is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepStatus {
    Pending,
    Ready,
    Claimed,
    Running,
    Submitted,
    AwaitingApproval,
    Done,
    Blocked,
    Rejected,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    pub const ALL: [StepStatus; 12] = [
        StepStatus::Pending,
        StepStatus::Ready,
        StepStatus::Claimed,
        StepStatus::Running,
        StepStatus::Submitted,
        StepStatus::AwaitingApproval,
        StepStatus::Done,
        StepStatus::Blocked,
        StepStatus::Rejected,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Ready => "ready",
            StepStatus::Claimed => "claimed",
            StepStatus::Running => "running",
            StepStatus::Submitted => "submitted",
            StepStatus::AwaitingApproval => "awaiting_approval",
            StepStatus::Done => "done",
            StepStatus::Blocked => "blocked",
            StepStatus::Rejected => "rejected",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }

    /// Only a person's retry moves a failed or skipped step again; nothing moves a done
    /// or cancelled one.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StepStatus::Done | StepStatus::Failed | StepStatus::Skipped | StepStatus::Cancelled
        )
    }

    /// An agent holds the step (a lease runs).
    pub fn is_held(self) -> bool {
        matches!(self, StepStatus::Claimed | StepStatus::Running)
    }

    /// Whether `self → to` is a transition of the state machine.
    pub fn allows(self, to: StepStatus) -> bool {
        use StepStatus::*;
        if to == Cancelled {
            return !self.is_finished();
        }
        matches!(
            (self, to),
            (Pending, Ready)
                | (Pending, Skipped)
                | (Ready, Pending)
                | (Ready, Claimed)
                | (Ready, Skipped)
                | (Claimed, Running)
                | (Claimed, Submitted)
                | (Claimed, Blocked)
                | (Claimed, Failed)
                | (Claimed, Ready)
                | (Running, Submitted)
                | (Running, Blocked)
                | (Running, Failed)
                | (Running, Ready)
                | (Blocked, Running)
                | (Blocked, Ready)
                | (Blocked, Failed)
                | (Submitted, AwaitingApproval)
                | (Submitted, Done)
                | (AwaitingApproval, Done)
                | (AwaitingApproval, Rejected)
                // Nobody decided in time and the step says `fail`.
                | (AwaitingApproval, Failed)
                | (Rejected, Ready)
                // A person's retry.
                | (Failed | Skipped, Ready | Pending)
        )
    }

    /// `Ok` when `self → to` is allowed; otherwise a `conflict` naming the current state.
    pub fn check(self, to: StepStatus) -> Result<(), Error> {
        if self.allows(to) {
            return Ok(());
        }
        Err(Error::conflict(format!(
            "step is {self}; it cannot become {to}"
        )))
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepStatus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        StepStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| Error::internal(format!("unknown step status `{text}` in the database")))
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Draft,
    Active,
    Paused,
    Done,
    Failed,
    Cancelled,
    Archived,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Draft,
        TaskStatus::Active,
        TaskStatus::Paused,
        TaskStatus::Done,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Draft => "draft",
            TaskStatus::Active => "active",
            TaskStatus::Paused => "paused",
            TaskStatus::Done => "done",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Archived => "archived",
        }
    }

    /// Whether `self → to` is allowed.
    pub fn allows(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Draft, Active)
                | (Active, Paused)
                | (Paused, Active)
                | (Active, Done)
                | (Active | Paused, Failed)
                // A retry re-opens a failed task.
                | (Failed, Active)
                | (Draft | Active | Paused, Cancelled)
                | (Done | Failed | Cancelled, Archived)
        )
    }

    /// `done`, `failed` and `cancelled` end a task.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            TaskStatus::Done | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    pub fn check(self, to: TaskStatus) -> Result<(), Error> {
        if self.allows(to) {
            return Ok(());
        }
        Err(Error::conflict(format!(
            "task is {self}; it cannot become {to}"
        )))
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| Error::internal(format!("unknown task status `{text}` in the database")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_steps_move_only_by_a_retry() {
        use StepStatus::*;
        for from in StepStatus::ALL
            .into_iter()
            .filter(|status| status.is_finished())
        {
            for to in StepStatus::ALL {
                let retry = matches!(from, Failed | Skipped) && matches!(to, Ready | Pending);
                assert_eq!(from.allows(to), retry, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn a_failed_task_reopens_only_by_a_retry_and_ends_are_ends() {
        use TaskStatus::*;
        assert!(Active.allows(Failed) && Paused.allows(Failed) && Failed.allows(Active));
        assert!(!Failed.allows(Done) && !Failed.allows(Cancelled) && !Done.allows(Active));
        let ended: Vec<TaskStatus> = TaskStatus::ALL
            .into_iter()
            .filter(|status| status.is_ended())
            .collect();
        assert_eq!(ended, [Done, Failed, Cancelled]);
    }

    #[test]
    fn refusal_names_the_current_state() {
        let err = StepStatus::Done.check(StepStatus::Claimed).unwrap_err();
        assert_eq!(err.to_string(), "step is done; it cannot become claimed");
        assert_eq!(err.code(), "conflict");
    }

    #[test]
    fn the_happy_path_and_rework_are_allowed() {
        use StepStatus::*;
        for (from, to) in [
            (Pending, Ready),
            (Ready, Claimed),
            (Claimed, Running),
            (Running, Submitted),
            (Submitted, AwaitingApproval),
            (AwaitingApproval, Rejected),
            (Rejected, Ready),
            (AwaitingApproval, Done),
            (Running, Blocked),
            (Blocked, Running),
        ] {
            assert!(from.allows(to), "{from} -> {to}");
        }
        assert!(!Ready.allows(Done));
        assert!(!Pending.allows(Claimed));
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in StepStatus::ALL {
            assert_eq!(status.as_str().parse::<StepStatus>().unwrap(), status);
        }
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>().unwrap(), status);
        }
    }
}
