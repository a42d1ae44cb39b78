//! Lineage: restore, keep writing, restore again — no LSN or version is reused; a fork records
//! its parent and is never interleaved with the original.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use finn_checkpoint::{
    CheckpointInput, Checkpointer, Error, Keyring, LineageMode, Lsn, Manifest, ParentLink, Reader,
    Remote, SigningKey, Takeover, publish,
};
use finn_wal::{Kind, NewRecord, Record, Wal};
use object_store::memory::InMemory;

use crate::util;

fn input(text: &str, lsn: Lsn) -> CheckpointInput {
    let mut i = CheckpointInput::new(lsn);
    i.add_bytes("state.txt", text.as_bytes().to_vec()).unwrap();
    i
}

fn append(wal: &Wal, tag: &str, n: usize) {
    for i in 0..n {
        wal.append(NewRecord::event(Kind::Memory, format!("{tag}{i}")))
            .unwrap();
    }
}

/// What finn-recovery does: take the lease first, then restore the newest checkpoint and every
/// shipped record after it into a fresh WAL, then advance the WAL past the high-water mark.
async fn restore(
    remote: &Remote,
    key: &SigningKey,
    dir: &Path,
    mode: LineageMode,
) -> (Checkpointer, Wal, Vec<Record>) {
    let cp = Checkpointer::open(
        remote.clone(),
        key.clone(),
        Keyring::new(),
        util::opts(|o| {
            o.takeover = Takeover::Force;
            o.lineage = mode;
        }),
    )
    .await
    .unwrap();
    let reader = Reader::new(remote.clone(), Keyring::trusting(key.verifying_key()));
    let (wal, _) = Wal::open(dir, finn_wal::Options::default()).unwrap();
    let mut replayed = Vec::new();
    if let (LineageMode::Continue, Some(m)) = (mode, reader.newest().await.unwrap()) {
        replayed = reader
            .shipped_after(m.lineage, m.covered_lsn)
            .await
            .unwrap();
        wal.advance_to(m.covered_lsn.next()).unwrap();
        wal.append_replicated(&replayed).unwrap();
    }
    wal.advance_to(cp.high_water().await.lsn.next()).unwrap();
    (cp, wal, replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_twice_then_fork_never_reuses_and_never_mixes() {
    let remote = util::remote(Arc::new(InMemory::new()), "lin");
    let key = util::key();
    let ring = Keyring::trusting(key.verifying_key());
    let dirs = tempfile::tempdir().unwrap();

    // First life: v1 at LSN 5, records 1..=10 shipped. Then it dies (no release).
    let (w1, wal1, _) = restore(&remote, &key, &dirs.path().join("1"), LineageMode::Continue).await;
    append(&wal1, "one-", 10);
    w1.checkpoint(input("one", Lsn::new(5))).await.unwrap();
    w1.ship_wal(&wal1).await.unwrap();
    let lineage = w1.lineage().await;
    drop((w1, wal1));

    // Second life: restore, keep writing (11..=20), v2 at 15, ship, die.
    let (w2, wal2, replayed) =
        restore(&remote, &key, &dirs.path().join("2"), LineageMode::Continue).await;
    assert_eq!(
        replayed.iter().map(|r| r.lsn.get()).collect::<Vec<_>>(),
        (6..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        w2.lineage().await,
        lineage,
        "a restore continues the lineage"
    );
    append(&wal2, "two-", 10);
    assert_eq!(wal2.last_lsn(), Lsn::new(20));
    let v2 = w2.checkpoint(input("two", Lsn::new(15))).await.unwrap();
    assert_eq!(v2.version, 2);
    w2.ship_wal(&wal2).await.unwrap();
    drop((w2, wal2));

    // Third life: restore again; the newest checkpoint links back to the first.
    let (w3, wal3, replayed) =
        restore(&remote, &key, &dirs.path().join("3"), LineageMode::Continue).await;
    assert_eq!(
        replayed.iter().map(|r| r.lsn.get()).collect::<Vec<_>>(),
        (16..=20).collect::<Vec<_>>()
    );
    append(&wal3, "three-", 1);
    assert_eq!(wal3.last_lsn(), Lsn::new(21));
    w3.ship_wal(&wal3).await.unwrap();
    let reader = Reader::new(remote.clone(), ring.clone()).with_lineage(lineage);
    let all = reader.shipped_after(lineage, Lsn::ZERO).await.unwrap();
    let lsns: Vec<u64> = all.iter().map(|r| r.lsn.get()).collect();
    assert_eq!(
        lsns,
        (1..=21).collect::<Vec<_>>(),
        "every LSN once, in order, across three lives"
    );
    let ids: BTreeSet<_> = all.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), all.len());

    // A deliberate fork from v1 (a rollback): new lineage, parent recorded, numbering above the
    // high-water mark of everything in the prefix.
    let v1 = reader.load(1).await.unwrap();
    let parent = ParentLink {
        lineage,
        version: 1,
        hash: v1.signed().hash(),
    };
    let (fork, fork_wal, _) = restore(
        &remote,
        &key,
        &dirs.path().join("fork"),
        LineageMode::Fork(parent),
    )
    .await;
    let fork_lineage = fork.lineage().await;
    assert_ne!(fork_lineage, lineage);
    assert_eq!(fork.high_water().await.lsn, Lsn::new(21));
    append(&fork_wal, "fork-", 3);
    assert_eq!(
        fork_wal.last_lsn(),
        Lsn::new(24),
        "no LSN of the original is reused"
    );
    let f = fork.checkpoint(input("fork", Lsn::new(24))).await.unwrap();
    assert_eq!(f.version, 3, "no version is reused");
    fork.ship_wal(&fork_wal).await.unwrap();

    // The original's last writer is fenced; its lineage is untouched.
    assert!(
        w3.checkpoint(input("late", Lsn::new(21)))
            .await
            .unwrap_err()
            .is_fenced()
    );

    let fork_reader = Reader::new(remote.clone(), ring.clone()).with_lineage(fork_lineage);
    let fm = fork_reader.load(3).await.unwrap();
    assert_eq!(fm.parent, Some(parent));
    assert_eq!(fm.previous, None);
    assert!(matches!(
        fork_reader.load(2).await,
        Err(Error::LineageMismatch { .. })
    ));
    assert!(matches!(
        reader.load(3).await,
        Err(Error::LineageMismatch { .. })
    ));
    let fork_records = fork_reader
        .shipped_after(fork_lineage, Lsn::ZERO)
        .await
        .unwrap();
    assert_eq!(
        fork_records.iter().map(|r| r.lsn.get()).collect::<Vec<_>>(),
        vec![22, 23, 24]
    );
    assert_eq!(
        reader
            .shipped_after(lineage, Lsn::ZERO)
            .await
            .unwrap()
            .len(),
        21,
        "original not interleaved"
    );

    // A manifest that links across lineages is refused by readers.
    let mut crossed: Manifest = fm.signed().manifest().clone();
    crossed.version = 4;
    crossed.parent = None;
    crossed.previous = Some(reader.load(2).await.unwrap().signed().link());
    publish(&remote, &crossed.sign(&key)).await.unwrap();
    let plain = Reader::new(remote.clone(), ring);
    assert!(matches!(
        plain.load(4).await,
        Err(Error::LineageMismatch { version: 2, .. })
    ));
}
