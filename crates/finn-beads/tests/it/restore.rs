//! Snapshots restored through the finn-recovery cascade, with WAL replay after the snapshot.
//!
//! The checkpoint *writer* (finn-checkpoint) is not reachable from this crate: the layer graph
//! (`cargo xtask check-graph`) allows finn-beads to depend on finn-wal and finn-recovery only. The
//! snapshot therefore reaches the cascade as the state directory a checkpoint restores (here
//! served by a [`TemplateSource`] over the checkpointed directory: staged, verified file by file
//! and swapped in by the cascade like any restored checkpoint). The facade's CLI test
//! (`crates/finn/tests/cli.rs`) covers checkpoint write → wipe → recover end to end.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use finn_beads::{Bead, DepType, Options, State, Status, Store};
use finn_recovery::{Cascade, Layout, TemplateSource};
use finn_wal::{Lsn, Wal};

/// File name of the beads snapshot inside the checkpointed state directory.
const SNAPSHOT_FILE: &str = "beads.snapshot";
/// The LSN the snapshot covers, beside it (the checkpoint manifest's LSN plays this role).
const SNAPSHOT_LSN_FILE: &str = "beads.snapshot.lsn";

fn wal_options() -> finn_wal::Options {
    finn_wal::Options {
        segment_size: 64 * 1024,
        ..finn_wal::Options::default()
    }
}

fn mutate_before_snapshot(store: &Store) {
    store
        .transact(|tx| {
            tx.create(Bead::new("bd-epic", "epic"))?;
            for i in 0..40 {
                let id = format!("bd-{i:02}");
                tx.create(Bead::new(id.as_str(), format!("task {i}")))?;
                tx.add_dependency(&id, "bd-epic", DepType::ParentChild)?;
                if i > 0 && i % 3 == 0 {
                    tx.add_dependency(&id, &format!("bd-{:02}", i - 1), DepType::Blocks)?;
                }
            }
            Ok(())
        })
        .unwrap();
    for i in (0..40).step_by(4) {
        store
            .transact(|tx| Ok(tx.close(&format!("bd-{i:02}"), Some("done"))?))
            .unwrap();
    }
}

fn mutate_after_snapshot(store: &Store) {
    for i in (1..40).step_by(5) {
        store
            .transact(|tx| Ok(tx.close(&format!("bd-{i:02}"), Some("done"))?))
            .unwrap();
    }
    store
        .transact(|tx| {
            tx.add_labels("bd-02", &["after-snapshot"])?;
            tx.reopen("bd-04")?;
            tx.create(Bead::new("bd-new", "created after the snapshot"))?;
            tx.add_dependency("bd-new", "bd-epic", DepType::ParentChild)?;
            tx.delete("bd-39", Some("dropped"), None)?;
            Ok(())
        })
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn ids(state: &State) -> Vec<String> {
    let mut v: Vec<String> = state.beads().map(|b| b.id.clone()).collect();
    v.sort();
    v
}

/// Mutations → snapshot written into the checkpointed state directory → WAL pruned through the
/// snapshot's LSN → more mutations → the state directory is lost → restore through the
/// finn-recovery cascade into a fresh data directory (the surviving WAL beside it) → reopen
/// from the restored snapshot plus replay: the state equals the one before the loss, records
/// at or below the snapshot LSN are not in the WAL any more, and no bead is duplicated.
#[test]
fn snapshot_restored_through_recovery_cascade_then_replay_continues_after_its_lsn() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("machine");
    let layout = Layout::new(&data);
    std::fs::create_dir_all(layout.state_dir()).unwrap();

    // 1. A store over the data directory's WAL; mutations; snapshot into the state directory.
    let (wal, _) = Wal::open(layout.wal_dir(), wal_options()).unwrap();
    let wal = Arc::new(wal);
    let store = Store::with_wal(Arc::clone(&wal), Options::default()).unwrap();
    mutate_before_snapshot(&store);
    let (snapshot, snapshot_lsn) = store.snapshot();
    let at_snapshot = store.read(|s| s.clone());
    finn_wal::fs::write_atomic(&layout.state_dir().join(SNAPSHOT_FILE), &snapshot).unwrap();
    finn_wal::fs::write_atomic(
        &layout.state_dir().join(SNAPSHOT_LSN_FILE),
        snapshot_lsn.get().to_string().as_bytes(),
    )
    .unwrap();
    // What the checkpoint carries: the state directory as it was at the snapshot.
    let checkpointed = root.path().join("checkpoint");
    copy_dir(layout.state_dir(), &checkpointed);

    // 2. The WAL is pruned through the snapshot's LSN, and writing goes on.
    wal.rotate().unwrap();
    wal.prune_through(snapshot_lsn).unwrap();
    assert!(
        wal.first_lsn().is_none_or(|first| first > snapshot_lsn),
        "records at or below the snapshot lsn are still in the WAL"
    );
    mutate_after_snapshot(&store);
    let expected = store.read(|s| s.clone());
    assert!(expected.lsn() > snapshot_lsn);
    assert_ne!(expected, at_snapshot, "the later mutations changed nothing");
    drop(store);
    drop(wal);

    // 3. The state directory is lost; a fresh data directory gets the surviving WAL only.
    let fresh = root.path().join("fresh");
    let fresh_layout = Layout::new(&fresh);
    copy_dir(layout.wal_dir(), fresh_layout.wal_dir());
    std::fs::remove_dir_all(&data).unwrap();

    // 4. Restore through the cascade, then reopen from the snapshot and replay.
    let recovery = runtime()
        .block_on(
            Cascade::builder(fresh_layout.clone())
                .wal_options(wal_options())
                .source(TemplateSource::from_dir("checkpoint", &checkpointed))
                .build()
                .run(),
        )
        .unwrap();
    let (report, wal) = recovery.into_parts();
    // The checkpointed files went through staging and verification; the WAL beside them was
    // kept and starts after the snapshot (a template base carries no LSN of its own, so the
    // beads snapshot's LSN is where replay starts).
    assert_eq!(report.files_restored, 2, "{report:#?}");
    assert_eq!(report.files_verified, 2, "{report:#?}");
    assert!(report.set_aside.is_empty(), "{report:#?}");
    assert!(
        report
            .wal_first_lsn
            .is_some_and(|first| first > snapshot_lsn),
        "{report:#?}"
    );
    assert_eq!(report.wal_last_lsn, expected.lsn(), "{report:#?}");
    let restored_snapshot = std::fs::read(fresh_layout.state_dir().join(SNAPSHOT_FILE)).unwrap();
    let restored_lsn: u64 =
        std::fs::read_to_string(fresh_layout.state_dir().join(SNAPSHOT_LSN_FILE))
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(restored_snapshot, snapshot);
    assert_eq!(Lsn::new(restored_lsn), snapshot_lsn);
    drop(wal);
    let reopened = Store::open_from_snapshot(
        &fresh,
        Options {
            wal: wal_options(),
            ..Options::default()
        },
        &restored_snapshot,
        Lsn::new(restored_lsn),
    )
    .unwrap();
    reopened.read(|s| {
        assert_eq!(*s, expected);
        assert_eq!(s.lsn(), expected.lsn());
        let ids = ids(s);
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "a bead is duplicated");
        assert_eq!(ids.len(), 42);
        assert!(s.get("bd-new").is_some());
        assert_eq!(s.get("bd-39").unwrap().status, Status::Tombstone);
        assert_eq!(s.get("bd-04").unwrap().status, Status::Open);
        assert!(s.get("bd-02").unwrap().has_label("after-snapshot"));
    });
    // The ready/blocked indexes are rebuilt from the restored state, not carried over stale.
    let rebuilt = reopened.read(|s| State::from_snapshot(&s.snapshot(), s.lsn()).unwrap());
    reopened.read(|s| assert_eq!(s.blocked_ids(), rebuilt.blocked_ids()));
}
