//! The cascade's explicit state machine, and the events it emits.
//!
//! The states are the anchors' (START → CHECK_INTEGRITY → RESTORE_R2 → RESTORE_GIT →
//! RESTORE_TEMPLATE → VERIFY → RUNNING / DEGRADED, plus LOOP_DETECTED), with RESTORE_R2 renamed
//! to [`State::RestoreObjectStore`] because any `object_store` backend can serve it, one state
//! added ([`State::ReplayWal`]: the anchors restored the last checkpoint and forgot what was
//! written after it), and a terminal [`State::Failed`] for strict mode and hard errors. Every
//! transition is checked against [`State::can_move_to`]; an illegal one is a bug and fails the
//! cascade instead of being taken.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use finn_wal::Lsn;
use serde::Serialize;

use crate::report::Warning;
use crate::source::SourceKind;

/// A state of the recovery cascade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum State {
    /// Initial state: the data directory is locked and the boot journal consulted.
    Start,
    /// The local state directory and the local WAL are checked.
    CheckIntegrity,
    /// A base state is staged from an object store (newest verified manifest first).
    RestoreObjectStore,
    /// A base state is staged from the git archive branch.
    RestoreGit,
    /// A base state is staged from the bundled or configured template.
    RestoreTemplate,
    /// The staged state is verified (blake3 of every file, no symlinks, no stray files,
    /// validators) and swapped in atomically.
    Verify,
    /// WAL records written after the base state's LSN are restored into the local WAL.
    ReplayWal,
    /// Terminal: the latest acknowledged state is in place.
    Running,
    /// Terminal: the process came up, but not with the latest state (template, or a local
    /// state with warnings); [`RecoveryReport::degraded`](crate::RecoveryReport::degraded) says why.
    Degraded,
    /// Terminal: too many failed boots inside the window; remote restores were skipped and the
    /// process came up with what was local (or the template).
    LoopDetected,
    /// Terminal: nothing acceptable could be brought up (or strict mode refused a degraded start).
    Failed,
}

impl State {
    /// Whether the cascade ends in this state.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Running | State::Degraded | State::LoopDetected | State::Failed
        )
    }

    /// Whether the machine may go from `self` to `next`. Any non-terminal state may fail.
    pub const fn can_move_to(self, next: State) -> bool {
        use State::*;
        if matches!(next, Failed) {
            return !self.is_terminal();
        }
        matches!(
            (self, next),
            (Start, CheckIntegrity)
                | (CheckIntegrity, ReplayWal | RestoreObjectStore | RestoreGit | RestoreTemplate)
                // From a remote tier straight to REPLAY_WAL: no remote source could replace a
                // template-derived local state, which is then kept.
                | (RestoreObjectStore, Verify | RestoreObjectStore | RestoreGit | RestoreTemplate | ReplayWal)
                | (RestoreGit, Verify | RestoreGit | RestoreTemplate | ReplayWal)
                | (RestoreTemplate, Verify | RestoreTemplate)
                | (Verify, ReplayWal | RestoreObjectStore | RestoreGit | RestoreTemplate)
                | (ReplayWal, Running | Degraded | LoopDetected)
        )
    }

    /// The restore state that serves sources of `kind`.
    pub const fn for_source(kind: SourceKind) -> State {
        match kind {
            SourceKind::ObjectStore => State::RestoreObjectStore,
            SourceKind::Git => State::RestoreGit,
            SourceKind::Template => State::RestoreTemplate,
        }
    }

    /// The anchors' spelling (`CHECK_INTEGRITY`, `RESTORE_OBJECT_STORE`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Start => "START",
            State::CheckIntegrity => "CHECK_INTEGRITY",
            State::RestoreObjectStore => "RESTORE_OBJECT_STORE",
            State::RestoreGit => "RESTORE_GIT",
            State::RestoreTemplate => "RESTORE_TEMPLATE",
            State::Verify => "VERIFY",
            State::ReplayWal => "REPLAY_WAL",
            State::Running => "RUNNING",
            State::Degraded => "DEGRADED",
            State::LoopDetected => "LOOP_DETECTED",
            State::Failed => "FAILED",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened during a cascade run, in order. Delivered to the callback or channel
/// given to [`CascadeBuilder::on_event`](crate::CascadeBuilder::on_event) /
/// [`CascadeBuilder::events_to`](crate::CascadeBuilder::events_to), and logged with `tracing`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The machine moved from one state to another.
    Transition {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
    },
    /// The boot journal counted too many failed boots inside the window.
    LoopDetected {
        /// Failed boots inside the window.
        failures: u32,
        /// The window.
        window: Duration,
    },
    /// A source is about to be asked whether it is available.
    TryingSource {
        /// The source's name.
        source: String,
        /// Its tier.
        kind: SourceKind,
    },
    /// A source was skipped.
    SourceUnavailable {
        /// The source's name.
        source: String,
        /// Why.
        reason: String,
    },
    /// A source was available but its restore (or the verification of what it staged) failed.
    SourceFailed {
        /// The source's name.
        source: String,
        /// Why.
        reason: String,
    },
    /// A source staged a candidate state.
    Staged {
        /// The source's name.
        source: String,
        /// Files staged.
        files: usize,
        /// Bytes staged.
        bytes: u64,
    },
    /// A verified staged state replaced the state directory.
    Swapped {
        /// Where the previous state directory was kept, if there was one.
        previous_kept_at: Option<PathBuf>,
    },
    /// WAL records were restored into the local WAL.
    WalRestored {
        /// Records appended.
        records: u64,
        /// The local WAL's last LSN afterwards.
        last_lsn: Lsn,
    },
    /// A warning was added to the report.
    Warning(Warning),
    /// The cascade ended.
    Finished {
        /// The terminal state.
        state: State,
    },
}

/// A registered event callback.
pub(crate) type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// Where events go: a callback, a channel, or both. Cloning shares the targets.
#[derive(Clone, Default)]
pub(crate) struct EventSink {
    callbacks: Vec<Callback>,
    channels: Vec<tokio::sync::mpsc::UnboundedSender<Event>>,
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("callbacks", &self.callbacks.len())
            .field("channels", &self.channels.len())
            .finish()
    }
}

impl EventSink {
    pub(crate) fn add_callback(&mut self, callback: Callback) {
        self.callbacks.push(callback);
    }

    pub(crate) fn add_channel(&mut self, sender: tokio::sync::mpsc::UnboundedSender<Event>) {
        self.channels.push(sender);
    }

    pub(crate) fn emit(&self, event: Event) {
        match &event {
            Event::Transition { from, to } => tracing::info!(%from, %to, "recovery state"),
            Event::Warning(w) => tracing::warn!(warning = ?w, "recovery warning"),
            Event::SourceFailed { source, reason } => {
                tracing::warn!(source = %source, reason = %reason, "recovery source failed")
            }
            other => tracing::debug!(event = ?other, "recovery event"),
        }
        for callback in &self.callbacks {
            callback(&event);
        }
        // A receiver that went away is not our failure; the run continues.
        for channel in &self.channels {
            let _ = channel.send(event.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [State; 11] = [
        State::Start,
        State::CheckIntegrity,
        State::RestoreObjectStore,
        State::RestoreGit,
        State::RestoreTemplate,
        State::Verify,
        State::ReplayWal,
        State::Running,
        State::Degraded,
        State::LoopDetected,
        State::Failed,
    ];

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ALL {
                assert!(!from.can_move_to(to), "{from} -> {to} must be impossible");
            }
        }
    }

    #[test]
    fn every_non_terminal_state_can_fail_and_reach_a_terminal_state() {
        for from in ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(
                from.can_move_to(State::Failed),
                "{from} must be able to fail"
            );
            // Walk forward greedily: a terminal state other than Failed is reachable.
            let mut seen = vec![from];
            let mut frontier = vec![from];
            let mut reached = false;
            while let Some(s) = frontier.pop() {
                for to in ALL {
                    if s.can_move_to(to) && !seen.contains(&to) {
                        if matches!(to, State::Running | State::Degraded | State::LoopDetected) {
                            reached = true;
                        }
                        seen.push(to);
                        frontier.push(to);
                    }
                }
            }
            assert!(reached, "{from} cannot come up");
        }
    }

    #[test]
    fn remote_tiers_are_never_revisited_after_a_lower_tier() {
        assert!(!State::RestoreGit.can_move_to(State::RestoreObjectStore));
        assert!(!State::RestoreTemplate.can_move_to(State::RestoreGit));
        assert!(!State::Start.can_move_to(State::RestoreObjectStore));
        assert!(
            !State::Verify.can_move_to(State::Running),
            "replay always runs"
        );
    }
}
