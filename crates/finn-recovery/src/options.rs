//! Tunables of a cascade run: [`Mode`], [`Timeouts`], [`LoopPolicy`], [`BootConfirmation`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default time a source gets to say whether it is available (the anchors' 5 s).
pub const DEFAULT_AVAILABILITY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a source gets to stage a state, all candidates included (the anchors' 30 s).
pub const DEFAULT_RESTORE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline for remote restores as a whole (the anchors' 120 s).
pub const DEFAULT_OVERALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Default number of failed boots inside the window that means "boot loop" (the anchors' 3).
pub const DEFAULT_LOOP_MAX_FAILURES: u32 = 3;
/// Default boot-loop window (the anchors' 10 minutes).
pub const DEFAULT_LOOP_WINDOW: Duration = Duration::from_secs(600);

/// What the cascade does when it cannot bring up the latest verified state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Mode {
    /// Fail rather than come up degraded: a template start, a boot loop or an incomplete WAL
    /// replay end in [`State::Failed`](crate::State::Failed) and an error.
    Strict,
    /// Best effort: come up with the best state that verified, and say why it is not the latest
    /// ([`State::Degraded`](crate::State::Degraded) / [`State::LoopDetected`](crate::State::LoopDetected)).
    #[default]
    Degraded,
    /// Fresh start from the template. The existing state directory and WAL are moved aside into
    /// `recovery/aside/` (kept by [`AsideRetention`](crate::AsideRetention)); no source is
    /// consulted.
    Clean,
}

/// Time limits. Timeouts cancel work: a source's future is dropped (child processes such as
/// `git` are killed), and whatever it had staged is discarded; nothing it does after the deadline
/// can reach the state directory, because only the cascade swaps a staged state in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeouts {
    /// Time a source gets to answer "are you available". Default: 5 s.
    pub availability: Duration,
    /// Time a source gets to stage a state, across all of its candidates. Default: 30 s.
    pub restore: Duration,
    /// Deadline for all remote sources together, from the start of the run; past it the
    /// template is used (or strict mode fails). Default: 120 s.
    pub overall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            availability: DEFAULT_AVAILABILITY_TIMEOUT,
            restore: DEFAULT_RESTORE_TIMEOUT,
            overall: DEFAULT_OVERALL_TIMEOUT,
        }
    }
}

/// Boot-loop detection, persisted in the boot journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoopPolicy {
    /// Failed boots inside [`LoopPolicy::window`] that make the next boot
    /// [`State::LoopDetected`](crate::State::LoopDetected). Zero disables detection. Default: 3.
    pub max_failures: u32,
    /// The window, measured on the wall clock (the journal outlives the process). Default: 10 min.
    pub window: Duration,
}

impl Default for LoopPolicy {
    fn default() -> Self {
        Self {
            max_failures: DEFAULT_LOOP_MAX_FAILURES,
            window: DEFAULT_LOOP_WINDOW,
        }
    }
}

/// When a boot counts as successful in the boot journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum BootConfirmation {
    /// When the cascade reaches [`State::Running`](crate::State::Running). Default.
    #[default]
    OnRecovery,
    /// When the application calls [`Recovery::confirm_boot`](crate::Recovery::confirm_boot)
    /// (e.g. after it served its first request). A process that dies before that counts as a
    /// failed boot, so a crash loop after recovery is detected too.
    Deferred,
}
