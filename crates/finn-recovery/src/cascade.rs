//! The cascade: [`Cascade`], its builder, and the run that walks the state machine.
//!
//! Reading order of [`Cascade::run`]: START (lock, repair an interrupted swap, boot journal),
//! CHECK_INTEGRITY (local WAL, local state), then the restore tiers in order, each source through
//! availability → candidates → stage → VERIFY → swap, then REPLAY_WAL, then the terminal state
//! and its outcome in the boot journal.

use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use finn_checkpoint::LineageId;
use finn_wal::{Lsn, Record, Wal};

use crate::aside::{self, AsideRetention};
use crate::error::{CascadeError, SourceFailure};
use crate::layout::Layout;
use crate::loop_guard::{BootJournal, Clock, Outcome, SystemClock};
use crate::options::{BootConfirmation, LoopPolicy, Mode, Timeouts};
use crate::replay;
use crate::report::{DegradedReason, LocalDecision, RecoveryReport, SourceUsed, Warning};
use crate::source::{RecoverySource, RemoteHead, ShippedWal, SourceError, SourceKind, Staged};
use crate::stage::{self, Staging};
use crate::state::{Event, EventSink, State};
use crate::verify::{self, Validators};

/// Builds a [`Cascade`]. Only the data directory is required.
///
/// ```no_run
/// use finn_recovery::{Cascade, Layout, Mode, TemplateSource};
/// # async fn boot() -> Result<(), Box<dyn std::error::Error>> {
/// let cascade = Cascade::builder(Layout::new("/var/lib/agent"))
///     .mode(Mode::Degraded)
///     .source(TemplateSource::bundled("default").with_file("NOTES.md", b"# NOTES.md\n".to_vec())?)
///     .build();
/// let recovery = cascade.run().await?;
/// println!("came up {} from {:?}", recovery.report().state, recovery.report().source);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until build() and run()"]
pub struct CascadeBuilder {
    layout: Layout,
    mode: Mode,
    timeouts: Timeouts,
    loop_policy: LoopPolicy,
    clock: Arc<dyn Clock>,
    sources: Vec<Arc<dyn RecoverySource>>,
    validators: Validators,
    wal_options: finn_wal::Options,
    events: EventSink,
    confirmation: BootConfirmation,
    aside: AsideRetention,
}

impl CascadeBuilder {
    /// The mode. Default: [`Mode::Degraded`].
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Time limits. Default: [`Timeouts::default`] (5 s / 30 s / 120 s).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Boot-loop policy. Default: 3 failed boots in 10 minutes.
    pub fn loop_policy(mut self, policy: LoopPolicy) -> Self {
        self.loop_policy = policy;
        self
    }

    /// The wall clock used by the boot journal. Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a source. Sources run by tier ([`SourceKind`]), then in the order added.
    pub fn source(self, source: impl RecoverySource + 'static) -> Self {
        self.shared_source(Arc::new(source))
    }

    /// Adds a shared source.
    pub fn shared_source(mut self, source: Arc<dyn RecoverySource>) -> Self {
        self.sources.push(source);
        self
    }

    /// Validators every state must pass (local, restored and template alike).
    pub fn validators(mut self, validators: Validators) -> Self {
        self.validators = validators;
        self
    }

    /// Options for opening the local WAL. Default: `finn_wal::Options::default()`.
    pub fn wal_options(mut self, options: finn_wal::Options) -> Self {
        self.wal_options = options;
        self
    }

    /// Calls `callback` with every [`Event`], synchronously, in order.
    pub fn on_event(mut self, callback: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events.add_callback(Arc::new(callback));
        self
    }

    /// Sends every [`Event`] to `sender` (a closed receiver is ignored).
    pub fn events_to(mut self, sender: tokio::sync::mpsc::UnboundedSender<Event>) -> Self {
        self.events.add_channel(sender);
        self
    }

    /// When a boot counts as good in the boot journal. Default: [`BootConfirmation::OnRecovery`].
    pub fn boot_confirmation(mut self, confirmation: BootConfirmation) -> Self {
        self.confirmation = confirmation;
        self
    }

    /// How long sets in `recovery/aside/` are kept. Default: the newest 3, and all younger
    /// than 7 days ([`AsideRetention::default`]); [`AsideRetention::keep_all`] never deletes.
    pub fn aside_retention(mut self, retention: AsideRetention) -> Self {
        self.aside = retention;
        self
    }

    /// The cascade.
    pub fn build(mut self) -> Cascade {
        // Stable: within a tier, the order the sources were added.
        self.sources.sort_by_key(|s| s.kind());
        Cascade {
            layout: self.layout,
            mode: self.mode,
            timeouts: self.timeouts,
            loop_policy: self.loop_policy,
            clock: self.clock,
            sources: self.sources,
            validators: self.validators,
            wal_options: self.wal_options,
            events: self.events,
            confirmation: self.confirmation,
            aside: self.aside,
        }
    }
}

/// The recovery cascade. Build with [`Cascade::builder`], run once per boot with
/// [`Cascade::run`]. See the [crate docs](crate) for what it guarantees.
#[derive(Debug)]
pub struct Cascade {
    layout: Layout,
    mode: Mode,
    timeouts: Timeouts,
    loop_policy: LoopPolicy,
    clock: Arc<dyn Clock>,
    sources: Vec<Arc<dyn RecoverySource>>,
    validators: Validators,
    wal_options: finn_wal::Options,
    events: EventSink,
    confirmation: BootConfirmation,
    aside: AsideRetention,
}

/// A process that came up: the report, the open local WAL (positioned after every restored
/// record), the boot journal, and, with [`BootConfirmation::Deferred`], the pending boot to
/// confirm.
#[derive(Debug)]
pub struct Recovery {
    report: RecoveryReport,
    wal: Wal,
    journal: BootJournal,
    pending: Option<Outcome>,
}

impl Recovery {
    /// What the run did.
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The local WAL, open for appends. Records from
    /// [`RecoveryReport::replay_from`] on are to be applied on top of the restored state.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The report and the WAL. With deferred confirmation, an unconfirmed boot stays pending
    /// (and counts as failed at the next boot).
    pub fn into_parts(self) -> (RecoveryReport, Wal) {
        (self.report, self.wal)
    }

    /// Records this boot as good in the boot journal ([`BootConfirmation::Deferred`]); a no-op
    /// when it already was.
    ///
    /// Confirming a boot says the process is healthy, not that its data is the agent's real
    /// state: it does not end the provisional status of a template-started state (that would
    /// happen at the end of every template boot with [`BootConfirmation::OnRecovery`], and the
    /// real state coming back later would never be looked at). Use
    /// [`Recovery::mark_local_authoritative`] for that.
    pub fn confirm_boot(&mut self) -> Result<(), crate::JournalError> {
        if let Some(outcome) = self.pending.take() {
            self.journal.raise_wal_high_water(self.wal.last_lsn().get());
            if let Err(e) = self.journal.finish(outcome) {
                self.pending = Some(outcome);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Declares the local state authoritative, durably: it is no longer provisional (a
    /// template-started state is not compared with a remote that comes back as if it could be
    /// thrown away), and its lineage is `lineage` (`None`: unknown, then it is never compared
    /// with a remote at all). Call it once the application has decided that this state is
    /// the agent's history, e.g. after a fork was reported ([`DegradedReason::LineageFork`])
    /// and an operator chose the local side, or with the lineage the checkpoint writer
    /// continues (`Checkpointer::lineage`) so that later boots can tell whether the remote
    /// moved ahead.
    pub fn mark_local_authoritative(
        &mut self,
        lineage: Option<LineageId>,
    ) -> Result<(), crate::JournalError> {
        self.journal.set_state_from_template(false, 0);
        self.journal.set_lineage(lineage);
        self.journal.raise_wal_high_water(self.wal.last_lsn().get());
        self.journal.save()?;
        self.report.lineage = lineage;
        Ok(())
    }
}

impl Cascade {
    /// A builder for the data directory laid out as `layout`.
    pub fn builder(layout: Layout) -> CascadeBuilder {
        CascadeBuilder {
            layout,
            mode: Mode::default(),
            timeouts: Timeouts::default(),
            loop_policy: LoopPolicy::default(),
            clock: Arc::new(SystemClock),
            sources: Vec::new(),
            validators: Validators::new(),
            wal_options: finn_wal::Options::default(),
            events: EventSink::default(),
            confirmation: BootConfirmation::default(),
            aside: AsideRetention::default(),
        }
    }

    /// The layout this cascade recovers.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Runs the cascade once. See the [crate docs](crate).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future between steps leaves the previous state or a complete new one in the
    /// state directory (a staged candidate is discarded; a swap in progress is a synchronous
    /// step that completes); the boot attempt stays `pending` in the journal and counts as failed.
    pub async fn run(&self) -> Result<Recovery, CascadeError> {
        let mut run = Run::new(self);
        let recovery_dir = self.layout.recovery_dir();
        std::fs::create_dir_all(&recovery_dir).map_err(|source| CascadeError::Io {
            path: recovery_dir.clone(),
            source,
        })?;
        let _lock = lock(&self.layout.lock_path())?;

        let repaired = stage::repair(&self.layout, run.aside_set)?;
        if repaired.rolled_forward {
            tracing::warn!("completed a state swap interrupted by a crash");
        }
        for path in repaired.set_aside {
            run.warn(Warning::SetAside {
                what: "interrupted-swap".into(),
                to: path.clone(),
            });
            run.report.set_aside.push(path);
        }

        let (mut journal, unreadable) = BootJournal::load_or_set_aside(
            self.layout.journal_path(),
            self.loop_policy,
            self.clock.clone(),
        )?;
        if let Some((reason, aside)) = unreadable {
            run.warn(Warning::JournalUnreadable { reason });
            run.warn(Warning::SetAside {
                what: "boot-journal".into(),
                to: aside.clone(),
            });
            run.report.set_aside.push(aside);
        }
        let verdict = journal.begin()?;
        if verdict.loop_detected {
            run.events.emit(Event::LoopDetected {
                failures: verdict.recent_failures,
                window: self.loop_policy.window,
            });
            run.boot_loop = Some(DegradedReason::BootLoop {
                failures: verdict.recent_failures,
                window: self.loop_policy.window,
            });
        }

        let result = self.run_states(&mut run, &mut journal).await;
        run.report.total = run.started.elapsed();
        match result {
            Ok((state, wal)) => {
                // Only a run that came up prunes: a failing boot keeps every bit of evidence.
                match aside::prune(
                    &self.layout.aside_root(),
                    self.aside,
                    self.clock.now_ms(),
                    run.aside_set,
                ) {
                    Ok(pruned) => run.report.aside_pruned = pruned,
                    Err(e) => run.warn(Warning::AsideNotPruned {
                        reason: finn_checkpoint::error_chain(&e),
                    }),
                }
                run.finish(state);
                run.report.wal_last_lsn = wal.last_lsn();
                run.report.wal_first_lsn = wal.first_lsn();
                let outcome = match state {
                    State::Running => Outcome::Running,
                    State::LoopDetected => Outcome::LoopDetected,
                    _ => Outcome::Degraded,
                };
                let mut recovery = Recovery {
                    report: run.report,
                    wal,
                    journal,
                    pending: None,
                };
                match self.confirmation {
                    BootConfirmation::OnRecovery => {
                        recovery
                            .journal
                            .raise_wal_high_water(recovery.wal.last_lsn().get());
                        recovery.journal.finish(outcome)?;
                    }
                    BootConfirmation::Deferred => {
                        // The journal still holds the attempt as `pending`; this process
                        // confirms it (or its death counts as a failed boot).
                        recovery.journal.resume(verdict.attempt);
                        recovery.journal.save()?;
                        recovery.pending = Some(outcome);
                    }
                }
                Ok(recovery)
            }
            Err(err) => {
                run.finish(State::Failed);
                if let Err(journal_err) = journal.finish(Outcome::Failed) {
                    // The attempt stays `pending`, which the next boot counts as a failure too.
                    tracing::error!(error = %journal_err, "could not record the failed boot");
                }
                Err(run.attach_report(err))
            }
        }
    }

    async fn run_states(
        &self,
        run: &mut Run<'_>,
        journal: &mut BootJournal,
    ) -> Result<(State, Wal), CascadeError> {
        if self.mode == Mode::Strict
            && let Some(reason) = run.boot_loop.clone()
        {
            return Err(run.strict(reason));
        }
        run.go(State::CheckIntegrity);
        let mut remote_allowed = run.boot_loop.is_none();
        let mut local_fallback = false;
        let mut wal = if self.mode == Mode::Clean {
            run.warn(Warning::CleanStart);
            for (path, what) in [
                (self.layout.state_dir(), "clean-state"),
                (self.layout.wal_dir(), "clean-wal"),
            ] {
                if let Some(aside) = stage::set_aside(&self.layout, path, what, run.aside_set)? {
                    run.warn(Warning::SetAside {
                        what: what.into(),
                        to: aside.clone(),
                    });
                    run.report.set_aside.push(aside);
                }
            }
            journal.reset_wal_high_water(0);
            remote_allowed = false;
            self.open_wal()?
        } else {
            let (wal, wal_ok) = self.open_or_set_aside_wal(run, journal)?;
            if wal_ok && self.local_state_ok(run) {
                match self.judge_local(run, journal, &wal, remote_allowed).await? {
                    Judgement::Keep => {
                        run.report.source = Some(SourceUsed {
                            name: "local".into(),
                            kind: None,
                        });
                        run.report.lineage = journal.lineage();
                        run.go(State::ReplayWal);
                        let state = self.terminal_state(run, self.local_kind(journal));
                        return self.settle(run, state).map(|s| (s, wal));
                    }
                    // Try the remote sources; if none can restore, keep the local state.
                    Judgement::Replace => local_fallback = true,
                }
            }
            wal
        };

        let mut deadline_warned = false;
        let mut used_kind = None;
        let mut restored_lineage = None;
        for index in 0..self.sources.len() {
            let source = self.sources[index].clone();
            let kind = source.kind();
            if kind.is_remote() && !remote_allowed {
                if run.boot_loop.is_some() {
                    run.warn(Warning::SourceUnavailable {
                        source: source.name().to_owned(),
                        reason: "boot loop detected: remote restores are not attempted".into(),
                    });
                }
                continue;
            }
            if kind == SourceKind::Template && local_fallback {
                break;
            }
            if kind.is_remote() && Instant::now() >= run.deadline {
                if !deadline_warned {
                    run.warn(Warning::DeadlineExceeded {
                        after: self.timeouts.overall,
                    });
                    deadline_warned = true;
                    run.deadline_hit = true;
                }
                run.failures.push(SourceFailure {
                    source: source.name().to_owned(),
                    reason: "overall deadline exceeded".into(),
                });
                continue;
            }
            if kind == SourceKind::Template && self.mode == Mode::Strict {
                return Err(run.strict(DegradedReason::TemplateOnly));
            }
            let tier_state = State::for_source(kind);
            if run.state != tier_state {
                run.go(tier_state);
            }
            let Some((staging, staged)) = self.try_source(run, index, &source).await else {
                continue;
            };
            let base = staged.manifest.lsn;
            // Decide the WAL replay before anything is installed, so that strict mode can
            // refuse an incomplete or conflicting history with the old state untouched.
            let plan = if kind.is_remote() {
                let (shipped, gaps) = self
                    .gather(run, base, staged.manifest.lineage, remote_allowed)
                    .await;
                let plan = replay::plan(&wal, base, shipped, &gaps)?;
                if let Some((last_lsn, missing_from)) = plan.gap {
                    run.warn(Warning::WalGap {
                        last_lsn,
                        missing_from,
                    });
                    run.wal_gap.get_or_insert(DegradedReason::WalIncomplete {
                        last_lsn,
                        missing_from,
                    });
                }
                if let Some(lsn) = plan.diverged {
                    run.warn(Warning::LocalWalDiverged { lsn });
                }
                if self.mode == Mode::Strict
                    && let Some(reason) = run.wal_gap.clone()
                {
                    return Err(run.strict(reason));
                }
                if self.mode == Mode::Strict
                    && let Some(lsn) = plan.diverged
                {
                    return Err(run.strict(DegradedReason::LocalWalDiverged {
                        lsn,
                        kept_at: self.layout.wal_dir().to_owned(),
                    }));
                }
                Some(plan)
            } else {
                None
            };
            run.report.files_restored = staged.files.len();
            run.report.bytes_restored = staged.files.iter().map(|f| f.size).sum();
            let previous = stage::swap_in(&self.layout, staging, run.aside_set)?;
            run.events.emit(Event::Swapped {
                previous_kept_at: previous.clone(),
            });
            if let Some(previous) = previous {
                run.warn(Warning::SetAside {
                    what: "state".into(),
                    to: previous.clone(),
                });
                run.report.set_aside.push(previous);
            }
            run.report.source = Some(SourceUsed {
                name: source.name().to_owned(),
                kind: Some(kind),
            });
            restored_lineage = staged.manifest.lineage;
            run.report.manifest = Some(staged.manifest);
            used_kind = Some(kind);
            run.go(State::ReplayWal);
            if let Some(plan) = plan {
                if let Some(lsn) = plan.diverged {
                    // The local WAL is another writer's version of this lineage past `lsn`:
                    // keep it aside (its records were acknowledged here) and continue from
                    // the restored history.
                    drop(wal);
                    if let Some(aside) = stage::set_aside(
                        &self.layout,
                        self.layout.wal_dir(),
                        "diverged-wal",
                        run.aside_set,
                    )? {
                        run.warn(Warning::SetAside {
                            what: "wal".into(),
                            to: aside.clone(),
                        });
                        run.report.set_aside.push(aside.clone());
                        run.wal_diverged = Some(DegradedReason::LocalWalDiverged {
                            lsn,
                            kept_at: aside,
                        });
                    }
                    wal = self.open_wal()?;
                }
                let restored = replay::apply(&wal, base, &plan.records)?;
                run.report.wal_records_restored = restored;
                run.report.replay_from = Some(base.next());
                run.events.emit(Event::WalRestored {
                    records: restored,
                    last_lsn: wal.last_lsn(),
                });
            }
            break;
        }
        let kind = match used_kind {
            Some(kind) => kind,
            None if local_fallback => {
                // No remote source could replace the local state: it is kept as it is.
                run.report.source = Some(SourceUsed {
                    name: "local".into(),
                    kind: None,
                });
                match run.report.local_decision.clone() {
                    Some(LocalDecision::ReplacedUnusedTemplate) => {
                        run.report.local_decision = Some(LocalDecision::KeptRemoteUnknown);
                    }
                    Some(LocalDecision::ReplacedBehind {
                        local_lsn,
                        remote_lsn,
                        ..
                    }) => {
                        // Known to be stale and nothing could replace it: up, but not RUNNING.
                        run.report.local_decision = Some(LocalDecision::KeptRemoteUnknown);
                        run.fork = Some(DegradedReason::LocalBehind {
                            local_lsn,
                            remote_lsn,
                        });
                    }
                    _ => {}
                }
                run.report.lineage = journal.lineage();
                run.go(State::ReplayWal);
                let state = self.terminal_state(run, self.local_kind(journal));
                return self.settle(run, state).map(|s| (s, wal));
            }
            None => {
                return Err(CascadeError::AllSourcesFailed {
                    failures: std::mem::take(&mut run.failures),
                    report: Box::new(RecoveryReport::new(self.mode)),
                });
            }
        };
        journal.reset_wal_high_water(wal.last_lsn().get());
        let from_template = kind == SourceKind::Template && self.mode != Mode::Clean;
        journal.set_state_from_template(from_template, wal.last_lsn().get());
        journal.set_lineage(restored_lineage);
        run.report.lineage = restored_lineage;
        let state = self.terminal_state(run, kind);
        self.settle(run, state).map(|s| (s, wal))
    }

    /// The tier a kept local state counts as: a template's while it is provisional.
    fn local_kind(&self, journal: &BootJournal) -> SourceKind {
        if journal.state_from_template() {
            SourceKind::Template
        } else {
            SourceKind::ObjectStore
        }
    }

    /// Decides whether an intact local state is kept or replaced (see the crate docs, "Which
    /// state wins"): kept unless nothing was written on it since a template install, or it is
    /// strictly behind the remote's newest history on the same lineage. A local state and a
    /// remote that are different lines of history are a fork: the local state is kept and
    /// the boot is degraded (strict mode refuses).
    async fn judge_local(
        &self,
        run: &mut Run<'_>,
        journal: &mut BootJournal,
        wal: &Wal,
        remote_allowed: bool,
    ) -> Result<Judgement, CascadeError> {
        let provisional = journal.state_from_template();
        let lineage = journal.lineage();
        let has_remote = self.sources.iter().any(|s| s.kind().is_remote());
        if !remote_allowed || !has_remote || (!provisional && lineage.is_none()) {
            run.report.local_decision = Some(LocalDecision::KeptUnchecked);
            return Ok(Judgement::Keep);
        }
        let local_lsn = wal.last_lsn();
        let template_lsn = Lsn::new(journal.template_lsn());
        if provisional && !has_record_above(wal, template_lsn)? {
            // Nothing was written on the template: any verified remote state is better, and
            // replacing it drops no acknowledged write.
            run.report.local_decision = Some(LocalDecision::ReplacedUnusedTemplate);
            return Ok(Judgement::Replace);
        }
        let Some((index, head)) = self.probe(run).await else {
            run.report.local_decision = Some(LocalDecision::KeptRemoteUnknown);
            return Ok(Judgement::Keep);
        };
        let remote_lsn = head.high_water();
        // Only records written since the template prove anything about a template-era state.
        let floor = if provisional { template_lsn } else { Lsn::ZERO };
        let evidence = self.shared_history(run, index, &head, wal, floor).await?;
        let same = match evidence {
            Evidence::Same => true,
            Evidence::Differ => false,
            Evidence::Unknown => lineage == Some(head.lineage),
        };
        if same && local_lsn >= remote_lsn {
            journal.set_lineage(Some(head.lineage));
            journal.set_state_from_template(false, 0);
            run.report.local_decision = Some(LocalDecision::KeptCurrent {
                lineage: head.lineage,
                local_lsn,
                remote_lsn,
            });
            return Ok(Judgement::Keep);
        }
        if same || (lineage == Some(head.lineage) && local_lsn < remote_lsn) {
            // Strictly behind on the same lineage: the remote holds everything the local WAL
            // does and more (a local record that differs is set aside by the replay).
            run.report.local_decision = Some(LocalDecision::ReplacedBehind {
                lineage: head.lineage,
                local_lsn,
                remote_lsn,
            });
            return Ok(Judgement::Replace);
        }
        run.warn(Warning::LineageFork {
            local: lineage,
            local_lsn,
            remote: head.lineage,
            remote_lsn,
        });
        run.report.local_decision = Some(LocalDecision::KeptFork);
        run.fork = Some(DegradedReason::LineageFork {
            local: lineage,
            local_lsn,
            remote: head.lineage,
            remote_lsn,
        });
        Ok(Judgement::Keep)
    }

    /// The newest history of the first remote source that can report one.
    async fn probe(&self, run: &mut Run<'_>) -> Option<(usize, RemoteHead)> {
        for (index, source) in self.sources.iter().enumerate() {
            if !source.kind().is_remote() || Instant::now() >= run.deadline {
                continue;
            }
            let now = Instant::now();
            let deadline = (now + self.timeouts.restore).min(run.deadline);
            let reason = match tokio::time::timeout_at(deadline.into(), source.head()).await {
                Ok(Ok(Some(head))) => return Some((index, head)),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => finn_checkpoint::error_chain(&e),
                Err(_) => format!(
                    "reading the newest manifest timed out after {:?}",
                    deadline.saturating_duration_since(now)
                ),
            };
            run.warn(Warning::SourceUnavailable {
                source: source.name().to_owned(),
                reason,
            });
        }
        None
    }

    /// Whether the local WAL and `head`'s shipped history hold the same record at the highest
    /// LSN both have (above `floor`). Record ids are ULIDs: two writers never produce the same
    /// one, so an equal record means one history contains the other up to it.
    async fn shared_history(
        &self,
        run: &mut Run<'_>,
        index: usize,
        head: &RemoteHead,
        wal: &Wal,
        floor: Lsn,
    ) -> Result<Evidence, CascadeError> {
        let at = wal.last_lsn().min(head.shipped_lsn);
        if at <= floor {
            return Ok(Evidence::Unknown);
        }
        let Some(local) = wal.read(at)? else {
            return Ok(Evidence::Unknown);
        };
        let source = &self.sources[index];
        let now = Instant::now();
        let deadline = (now + self.timeouts.restore).min(run.deadline);
        let after = Lsn::new(at.get() - 1);
        let shipped = match tokio::time::timeout_at(
            deadline.into(),
            source.wal_of(head.lineage, after),
        )
        .await
        {
            Ok(Ok(Some(shipped))) => shipped,
            Ok(Ok(None)) => return Ok(Evidence::Unknown),
            Ok(Err(e)) => {
                run.warn(Warning::ShippedWalUnavailable {
                    source: source.name().to_owned(),
                    reason: finn_checkpoint::error_chain(&e),
                });
                return Ok(Evidence::Unknown);
            }
            Err(_) => {
                run.warn(Warning::ShippedWalUnavailable {
                    source: source.name().to_owned(),
                    reason: "timed out".into(),
                });
                return Ok(Evidence::Unknown);
            }
        };
        Ok(match shipped.records.iter().find(|r| r.lsn == at) {
            Some(remote) if *remote == local => Evidence::Same,
            Some(_) => Evidence::Differ,
            None => Evidence::Unknown,
        })
    }

    /// Opens the local WAL; a corrupt one is set aside (never deleted) and a new one opened.
    fn open_or_set_aside_wal(
        &self,
        run: &mut Run<'_>,
        journal: &mut BootJournal,
    ) -> Result<(Wal, bool), CascadeError> {
        match Wal::open(self.layout.wal_dir(), self.wal_options.clone()) {
            Ok((wal, _)) => {
                let last = wal.last_lsn().get();
                if last < journal.wal_high_water() {
                    run.warn(Warning::WalWentBackwards {
                        now: wal.last_lsn(),
                        previously: Lsn::new(journal.wal_high_water()),
                    });
                    return Ok((wal, false));
                }
                Ok((wal, true))
            }
            Err(e @ finn_wal::Error::Locked { .. }) => Err(e.into()),
            Err(e @ finn_wal::Error::Corrupt { .. }) => {
                run.warn(Warning::LocalIntegrity {
                    reason: format!("local WAL: {e}"),
                });
                if let Some(aside) = stage::set_aside(
                    &self.layout,
                    self.layout.wal_dir(),
                    "corrupt-wal",
                    run.aside_set,
                )? {
                    run.warn(Warning::SetAside {
                        what: "wal".into(),
                        to: aside.clone(),
                    });
                    run.report.set_aside.push(aside);
                }
                Ok((self.open_wal()?, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn open_wal(&self) -> Result<Wal, CascadeError> {
        Ok(Wal::open(self.layout.wal_dir(), self.wal_options.clone())?.0)
    }

    /// Whether the local state directory can be kept: present, a real directory, no symlinks
    /// or special files, and every validator passes.
    fn local_state_ok(&self, run: &mut Run<'_>) -> bool {
        let dir = self.layout.state_dir();
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                run.warn(Warning::LocalIntegrity {
                    reason: format!("{} is not a directory", dir.display()),
                });
                return false;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => {
                run.warn(Warning::LocalIntegrity {
                    reason: format!("{}: {e}", dir.display()),
                });
                return false;
            }
        }
        match verify::check_local_tree(dir, &self.validators) {
            Ok(v) => {
                run.report.files_verified = v.files;
                true
            }
            Err(e) => {
                run.warn(Warning::LocalIntegrity {
                    reason: e.to_string(),
                });
                false
            }
        }
    }

    /// Availability, candidates, stage and verify for one source. Returns the verified staging
    /// directory, or `None` after recording why the source could not be used.
    async fn try_source(
        &self,
        run: &mut Run<'_>,
        index: usize,
        source: &Arc<dyn RecoverySource>,
    ) -> Option<(Staging, Staged)> {
        let name = source.name().to_owned();
        let kind = source.kind();
        let tier_state = State::for_source(kind);
        run.events.emit(Event::TryingSource {
            source: name.clone(),
            kind,
        });
        let now = Instant::now();
        let source_deadline = if kind.is_remote() {
            (now + self.timeouts.restore).min(run.deadline)
        } else {
            now + self.timeouts.restore
        };
        let availability_deadline = (now + self.timeouts.availability).min(source_deadline);
        let available =
            tokio::time::timeout_at(availability_deadline.into(), source.check_available()).await;
        let reason = match available {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(finn_checkpoint::error_chain(&e)),
            Err(_) => Some(format!(
                "availability check timed out after {:?}",
                availability_deadline.saturating_duration_since(now)
            )),
        };
        if let Some(reason) = reason {
            run.events.emit(Event::SourceUnavailable {
                source: name.clone(),
                reason: reason.clone(),
            });
            run.warn(Warning::SourceUnavailable {
                source: name.clone(),
                reason: reason.clone(),
            });
            run.failures.push(SourceFailure {
                source: name,
                reason,
            });
            return None;
        }
        run.available.push(index);

        let candidates =
            match tokio::time::timeout_at(source_deadline.into(), source.candidates()).await {
                Ok(Ok(c)) if c.is_empty() => Err(SourceError::Empty.to_string()),
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(finn_checkpoint::error_chain(&e)),
                Err(_) => Err(format!(
                    "listing candidates timed out after {:?}",
                    source_deadline - now
                )),
            };
        let candidates = match candidates {
            Ok(c) => c,
            Err(reason) => {
                run.source_failed(&name, reason);
                return None;
            }
        };

        let mut last_reason = String::new();
        for candidate in &candidates {
            let mut staging = match Staging::new_in(&self.layout.staging_root()) {
                Ok(s) => s,
                Err(e) => {
                    run.source_failed(&name, e.to_string());
                    return None;
                }
            };
            let staged = tokio::time::timeout_at(
                source_deadline.into(),
                source.stage(candidate, &mut staging),
            )
            .await;
            let staged = match staged {
                Ok(Ok(staged)) => staged,
                Ok(Err(e)) => {
                    last_reason = finn_checkpoint::error_chain(&e);
                    run.candidate_skipped(
                        &name,
                        candidate.version,
                        &candidate.label,
                        last_reason.clone(),
                    );
                    continue;
                }
                Err(_) => {
                    // The staging directory (and anything the cancelled future wrote late) is
                    // discarded with `staging`; nothing reached the state directory.
                    run.source_failed(
                        &name,
                        format!("restore timed out after {:?}", source_deadline - now),
                    );
                    return None;
                }
            };
            run.events.emit(Event::Staged {
                source: name.clone(),
                files: staged.files.len(),
                bytes: staging.bytes(),
            });
            run.go(State::Verify);
            let dir = staging.dir().to_owned();
            let files = staged.files.clone();
            let validators = self.validators.clone();
            let verified =
                tokio::task::spawn_blocking(move || verify::verify_tree(&dir, &files, &validators))
                    .await;
            match verified {
                Ok(Ok(v)) => {
                    run.report.files_verified = v.files;
                    return Some((staging, staged));
                }
                Ok(Err(e)) => last_reason = finn_checkpoint::error_chain(&e),
                Err(join) => last_reason = format!("verification task failed: {join}"),
            }
            run.candidate_skipped(
                &name,
                candidate.version,
                &candidate.label,
                last_reason.clone(),
            );
            run.go(tier_state);
        }
        run.events.emit(Event::SourceFailed {
            source: name.clone(),
            reason: last_reason.clone(),
        });
        run.failures.push(SourceFailure {
            source: name,
            reason: last_reason,
        });
        None
    }

    /// Gathers shipped records after `base` from every available remote source (of `lineage`
    /// when the base names one), with the holes the sources reported.
    async fn gather(
        &self,
        run: &mut Run<'_>,
        base: Lsn,
        lineage: Option<LineageId>,
        remote_allowed: bool,
    ) -> (Vec<Record>, Vec<(Lsn, Lsn)>) {
        let mut shipped: Vec<Record> = Vec::new();
        let mut gaps = Vec::new();
        if !remote_allowed {
            return (shipped, gaps);
        }
        for &index in &run.available.clone() {
            let source = self.sources[index].clone();
            if !source.kind().is_remote() {
                continue;
            }
            // Bounded by the overall deadline, but a restored base always gets at least the
            // availability timeout to fetch the records that make it current.
            let now = Instant::now();
            let deadline = (now + self.timeouts.restore)
                .min(run.deadline)
                .max(now + self.timeouts.availability);
            let fetch = async {
                if let Some(lineage) = lineage
                    && let Some(wal) = source.wal_of(lineage, base).await?
                {
                    return Ok(Some(wal));
                }
                Ok::<_, SourceError>(
                    source
                        .wal_after(base)
                        .await?
                        .map(|records| ShippedWal { records, gap: None }),
                )
            };
            match tokio::time::timeout_at(deadline.into(), fetch).await {
                Ok(Ok(Some(wal))) => {
                    shipped.extend(wal.records);
                    if let Some((first_missing, last_missing)) = wal.gap {
                        if let Some(lineage) = lineage {
                            run.warn(Warning::ShippedGap {
                                source: source.name().to_owned(),
                                lineage,
                                first_missing,
                                last_missing,
                            });
                        }
                        gaps.push((first_missing, last_missing));
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    run.shipped_unreadable(source.name(), base, finn_checkpoint::error_chain(&e))
                }
                Err(_) => run.shipped_unreadable(source.name(), base, "timed out".into()),
            }
        }
        (shipped, gaps)
    }

    fn terminal_state(&self, run: &mut Run<'_>, kind: SourceKind) -> State {
        if let Some(reason) = run.boot_loop.clone() {
            run.report.degraded = Some(reason);
            State::LoopDetected
        } else if let Some(reason) = run.fork.clone() {
            run.report.degraded = Some(reason);
            State::Degraded
        } else if kind == SourceKind::Template && self.mode != Mode::Clean {
            run.report.degraded = Some(if run.deadline_hit {
                DegradedReason::DeadlineExceeded
            } else {
                DegradedReason::TemplateOnly
            });
            State::Degraded
        } else if let Some(reason) = run.wal_gap.clone().or_else(|| run.wal_diverged.clone()) {
            run.report.degraded = Some(reason);
            State::Degraded
        } else {
            State::Running
        }
    }

    fn settle(&self, run: &mut Run<'_>, state: State) -> Result<State, CascadeError> {
        if self.mode == Mode::Strict && state != State::Running {
            let reason = run
                .report
                .degraded
                .clone()
                .unwrap_or(DegradedReason::TemplateOnly);
            return Err(run.strict(reason));
        }
        Ok(state)
    }
}

/// What [`Cascade::judge_local`] decided.
enum Judgement {
    /// The local state is brought up as it is.
    Keep,
    /// Remote sources are tried; if none restores, the local state is kept after all.
    Replace,
}

/// What comparing the local WAL with a remote's shipped record at the same LSN showed.
enum Evidence {
    /// The same record: one history contains the other up to that LSN.
    Same,
    /// Different records: the histories split at or before that LSN.
    Differ,
    /// Nothing to compare (no shipped record there, or none above the floor).
    Unknown,
}

/// Whether `wal` holds any record with an LSN above `lsn`.
fn has_record_above(wal: &Wal, lsn: Lsn) -> Result<bool, finn_wal::Error> {
    if wal.last_lsn() <= lsn {
        return Ok(false);
    }
    match wal.iter_from(lsn.next())?.next() {
        Some(record) => record.map(|_| true),
        None => Ok(false),
    }
}

fn lock(path: &std::path::Path) -> Result<File, CascadeError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| CascadeError::Io {
            path: path.to_owned(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CascadeError::Busy {
            path: path.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(CascadeError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Mutable state of one run.
struct Run<'a> {
    events: &'a EventSink,
    report: RecoveryReport,
    state: State,
    entered: Instant,
    started: Instant,
    deadline: Instant,
    failures: Vec<SourceFailure>,
    /// Indices of sources that passed their availability check in this run.
    available: Vec<usize>,
    boot_loop: Option<DegradedReason>,
    wal_gap: Option<DegradedReason>,
    /// The local WAL diverged from the restored history and was set aside.
    wal_diverged: Option<DegradedReason>,
    /// Why the kept local state is not current: a fork, or known to be behind the remote.
    fork: Option<DegradedReason>,
    deadline_hit: bool,
    /// The ULID everything this run sets aside is named with (one aside set per run).
    aside_set: ulid::Ulid,
}

impl<'a> Run<'a> {
    fn new(cascade: &'a Cascade) -> Self {
        let now = Instant::now();
        Self {
            events: &cascade.events,
            report: RecoveryReport::new(cascade.mode),
            state: State::Start,
            entered: now,
            started: now,
            deadline: now + cascade.timeouts.overall,
            failures: Vec::new(),
            available: Vec::new(),
            boot_loop: None,
            wal_gap: None,
            wal_diverged: None,
            fork: None,
            deadline_hit: false,
            aside_set: ulid::Ulid::new(),
        }
    }

    fn go(&mut self, next: State) {
        debug_assert!(
            self.state.can_move_to(next),
            "illegal transition {} -> {next}",
            self.state
        );
        if !self.state.can_move_to(next) {
            tracing::error!(from = %self.state, to = %next, "illegal recovery transition");
        }
        let now = Instant::now();
        self.report.add_phase(self.state, now - self.entered);
        self.entered = now;
        self.events.emit(Event::Transition {
            from: self.state,
            to: next,
        });
        self.state = next;
        self.report.state = next;
    }

    fn finish(&mut self, state: State) {
        if self.state != state {
            self.go(state);
        }
        self.report.total = self.started.elapsed();
        self.events.emit(Event::Finished { state });
    }

    fn warn(&mut self, warning: Warning) {
        self.events.emit(Event::Warning(warning.clone()));
        self.report.warnings.push(warning);
    }

    fn source_failed(&mut self, source: &str, reason: String) {
        self.events.emit(Event::SourceFailed {
            source: source.to_owned(),
            reason: reason.clone(),
        });
        self.warn(Warning::SourceFailed {
            source: source.to_owned(),
            reason: reason.clone(),
        });
        self.failures.push(SourceFailure {
            source: source.to_owned(),
            reason,
        });
    }

    fn shipped_unreadable(&mut self, source: &str, base: Lsn, reason: String) {
        self.warn(Warning::ShippedWalUnavailable {
            source: source.to_owned(),
            reason,
        });
        if self.wal_gap.is_none() {
            self.wal_gap = Some(DegradedReason::ShippedWalUnreadable {
                base,
                source: source.to_owned(),
            });
        }
    }

    fn candidate_skipped(&mut self, source: &str, version: u64, label: &str, reason: String) {
        self.warn(Warning::CandidateSkipped {
            source: source.to_owned(),
            version,
            label: label.to_owned(),
            reason,
        });
    }

    fn strict(&mut self, reason: DegradedReason) -> CascadeError {
        self.report.degraded = Some(reason.clone());
        CascadeError::StrictRefused {
            reason,
            report: Box::new(RecoveryReport::new(self.report.mode)),
        }
    }

    /// Puts the final report into an error that carries one.
    fn attach_report(&mut self, err: CascadeError) -> CascadeError {
        let report = Box::new(self.report.clone());
        match err {
            CascadeError::AllSourcesFailed { failures, .. } => {
                CascadeError::AllSourcesFailed { failures, report }
            }
            CascadeError::StrictRefused { reason, .. } => {
                CascadeError::StrictRefused { reason, report }
            }
            other => other,
        }
    }
}
