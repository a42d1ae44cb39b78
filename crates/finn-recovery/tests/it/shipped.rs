//! Shipped WAL after a restored base: holes, and WAL shipped for a base restored from git.

use std::path::PathBuf;

use finn_recovery::source::git::GitSource;
use finn_recovery::source::object_store::ObjectStoreSource;
use finn_recovery::{Cascade, CascadeError, DegradedReason, Layout, Mode, State, Warning};
use finn_wal::{Lsn, Record};

use crate::end_to_end::{World, git_archive, world};
use crate::util::*;

/// Every level-0 batch object of the world's store, with its LSN range.
fn batches(w: &World) -> Vec<(u64, u64, PathBuf)> {
    let mut out = Vec::new();
    let wal = w.store_dir().join("agent/wal");
    for lineage in std::fs::read_dir(&wal).unwrap() {
        for object in std::fs::read_dir(lineage.unwrap().path()).unwrap() {
            let path = object.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut parts = name.trim_end_matches(".batch").split('-');
            let first: u64 = parts.next().unwrap().parse().unwrap();
            let last: u64 = parts.next().unwrap().parse().unwrap();
            out.push((first, last, path));
        }
    }
    out.sort();
    out
}

/// A batch object lost from the middle of the shipped WAL: the records before the hole are
/// replayed, the hole is reported with its LSN range, and the boot is degraded; strict mode
/// refuses and installs nothing.
#[tokio::test]
async fn a_shipped_gap_replays_the_records_before_it_and_degrades() {
    let w = world(None, 1, 150).await;
    // The second batch after the checkpoint goes missing.
    let after: Vec<_> = batches(&w)
        .into_iter()
        .filter(|(first, _, _)| *first > w.checkpoint_lsn.get())
        .collect();
    let (hole_first, hole_last, path) = after[1].clone();
    std::fs::remove_file(path).unwrap();
    let before_hole = after[0].1;
    assert_eq!(before_hole + 1, hole_first);
    std::fs::remove_dir_all(&w.data).unwrap();
    let cascade = |mode| {
        Cascade::builder(Layout::new(&w.data))
            .wal_options(wal_options())
            .mode(mode)
            .source(ObjectStoreSource::new(w.remote.clone(), w.keyring()))
            .build()
    };

    let err = cascade(Mode::Strict).run().await.unwrap_err();
    assert!(
        matches!(
            &err,
            CascadeError::StrictRefused { reason: DegradedReason::WalIncomplete { missing_from, .. }, .. }
                if missing_from.get() == hole_first
        ),
        "{err:?}"
    );
    assert!(!w.data.join("state").exists(), "strict installed nothing");

    let recovery = cascade(Mode::Degraded).run().await.unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Degraded, "{report:#?}");
    assert_eq!(
        report.degraded,
        Some(DegradedReason::WalIncomplete {
            last_lsn: Lsn::new(before_hole),
            missing_from: Lsn::new(hole_first),
        })
    );
    assert!(
        report.warnings.iter().any(|x| matches!(
            x,
            Warning::ShippedGap { first_missing, last_missing, .. }
                if first_missing.get() == hole_first && last_missing.get() == hole_last
        )),
        "{:#?}",
        report.warnings
    );
    assert_eq!(read_tree(&w.data.join("state")), w.checkpointed);
    // Every record before the hole is live, verbatim.
    let expected: Vec<Record> = w
        .records
        .iter()
        .filter(|r| r.lsn > w.checkpoint_lsn && r.lsn.get() <= before_hole)
        .cloned()
        .collect();
    assert_eq!(report.wal_records_restored, expected.len() as u64);
    let live: Vec<Record> = recovery
        .wal()
        .iter_from(w.checkpoint_lsn.next())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(live, expected);
}

/// Every manifest in the object store fails verification, so the base comes from the git
/// archive; the object store is still reachable, and the WAL it shipped for the git manifest's
/// lineage after that base is replayed: the state is the latest, not the archived checkpoint.
#[tokio::test]
async fn a_git_base_gets_the_wal_the_object_store_shipped_for_its_lineage() {
    let w = world(None, 2, 60).await;
    let bare = git_archive(&w).await;
    for entry in std::fs::read_dir(w.store_dir().join("agent/manifests")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, bytes).unwrap();
    }
    std::fs::remove_dir_all(&w.data).unwrap();
    let recovery = Cascade::builder(Layout::new(&w.data))
        .wal_options(wal_options())
        .mode(Mode::Strict)
        .source(ObjectStoreSource::new(w.remote.clone(), w.keyring()))
        .source(
            GitSource::new(bare.to_str().unwrap(), w.keyring())
                .with_cache_dir(w.root.path().join("git-cache")),
        )
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Running, "{report:#?}");
    assert_eq!(report.source.as_ref().unwrap().name, "git");
    assert!(report.warnings.iter().any(
        |x| matches!(x, Warning::CandidateSkipped { source, .. } if source == "object-store")
    ));
    let manifest = report.manifest.as_ref().unwrap();
    assert_eq!(manifest.lsn, w.checkpoint_lsn);
    assert!(manifest.lineage.is_some());
    assert_eq!(report.lineage, manifest.lineage);
    assert_eq!(read_tree(&w.data.join("state")), w.checkpointed);
    let expected: Vec<Record> = w
        .records
        .iter()
        .filter(|r| r.lsn > w.checkpoint_lsn)
        .cloned()
        .collect();
    assert_eq!(expected.len(), 60);
    assert_eq!(report.wal_records_restored, 60);
    let live: Vec<Record> = recovery
        .wal()
        .iter_from(w.checkpoint_lsn.next())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(live, expected);
}

/// A lineage's shipped history jumps (1..=10, then 20..=25: what a fork does after a restore to
/// the past, continuing above the prefix's high-water mark) with a verified chain, the batch
/// after the jump naming LSN 10 as the one it follows. With the data directory lost, every
/// record on both sides of the jump is replayed verbatim, the boot is RUNNING (strict mode
/// accepts it: a jump is not a hole), and new appends continue above 25.
#[tokio::test]
async fn a_jump_in_the_verified_shipped_chain_is_replayed_not_a_hole() {
    let root = tempfile::tempdir().unwrap();
    let (remote, _) = crate::end_to_end::local_remote(root.path());
    let data = root.path().join("data");
    let layout = Layout::new(&data);
    let key = finn_checkpoint::SigningKey::generate();
    let cp = finn_checkpoint::Checkpointer::open(
        remote.clone(),
        key.clone(),
        finn_checkpoint::Keyring::new(),
        finn_checkpoint::CheckpointerOptions::default(),
    )
    .await
    .unwrap();
    let (wal, _) = finn_wal::Wal::open(layout.wal_dir(), wal_options()).unwrap();
    let checkpointed = state("base", 3);
    write_tree(layout.state_dir(), &checkpointed);
    cp.checkpoint(
        finn_checkpoint::CheckpointInput::from_dir(layout.state_dir(), Lsn::ZERO).unwrap(),
    )
    .await
    .unwrap();
    let put = |i: u64| {
        wal.append(finn_wal::NewRecord::put(
            finn_wal::Kind::State,
            format!("k{i}"),
            format!("value {i}"),
        ))
        .unwrap()
    };
    for i in 1..=10 {
        assert_eq!(put(i).get(), i);
    }
    cp.ship_wal(&wal).await.unwrap();
    wal.advance_to(Lsn::new(20)).unwrap();
    for i in 20..=25 {
        assert_eq!(put(i).get(), i);
    }
    cp.ship_wal(&wal).await.unwrap();
    let written: Vec<Record> = wal
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let lsns: Vec<u64> = written.iter().map(|r| r.lsn.get()).collect();
    assert_eq!(lsns, (1..=10).chain(20..=25).collect::<Vec<_>>());
    drop(wal);
    drop(cp);
    std::fs::remove_dir_all(&data).unwrap();

    let recovery = Cascade::builder(Layout::new(&data))
        .wal_options(wal_options())
        .mode(Mode::Strict)
        .source(ObjectStoreSource::new(
            remote,
            finn_checkpoint::Keyring::trusting(key.verifying_key()),
        ))
        .build()
        .run()
        .await
        .unwrap();
    let report = recovery.report();
    assert_eq!(report.state, State::Running, "{report:#?}");
    assert_eq!(report.degraded, None);
    assert!(
        !report
            .warnings
            .iter()
            .any(|x| matches!(x, Warning::WalGap { .. } | Warning::ShippedGap { .. })),
        "{:#?}",
        report.warnings
    );
    assert_eq!(read_tree(&data.join("state")), checkpointed);
    assert_eq!(report.wal_records_restored, 16);
    let live: Vec<Record> = recovery
        .wal()
        .iter_from(Lsn::new(1))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(live, written, "both sides of the jump, verbatim");
    let next = recovery
        .wal()
        .append(finn_wal::NewRecord::event(finn_wal::Kind::Session, "next"))
        .unwrap();
    assert_eq!(next.get(), 26, "the WAL continues above the jump");
}
