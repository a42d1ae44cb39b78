//! Power loss inside the WAL's own I/O path, on [`SimFs`].
//!
//! `power_loss.rs` builds crash images from the outside, by diffing real directories; here the
//! WAL runs on a recording file system ([`Options::with_io`]) that sees every write, `set_len`,
//! sync, rename and removal, so the images are exactly what a power loss could leave at that
//! point of the code — including the moments inside a rotation, a seal, a compaction or a
//! prune, and the directory syncs that `power_loss.rs` has to assume.
//!
//! A seeded workload (`Sync` and `None` appends, batches, explicit syncs, rotations through a
//! 4 KiB segment size, one compaction and one prune; segments preallocated or not) runs once
//! to count its operations, then again with the power failing after operation `n` for every
//! `n` (`SimFs::halt_after`). For each, the image holding only what was synced and several
//! images holding random subsets of the unsynced writes and entry changes are opened by a
//! fresh WAL with the default recovery mode. It must open; every record the WAL acknowledged
//! as durable (`Wal::durable_lsn`) must be there, intact and in order (unless a compaction may
//! have replaced it by a newer durable put of its key, or the prune covered it); everything
//! after must be an intact prefix of what was appended.
//!
//! `Durability::Batch` is left out: its background flush would make the operation count
//! depend on timing, and a halt point must name the same operation in every run.
//!
//! `FINN_POWER_LOSS_ROUNDS=N` runs N workloads (default 4) with 4 subset images per halt point
//! (`FINN_POWER_LOSS_ROUNDS` above 4 also raises that to 16).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::Rng;
use finn_wal::fs::sim::{Crash, SimFs};
use finn_wal::{Durability, Error, Kind, Lsn, NewRecord, Options, Wal};

const DIR: &str = "/sim/wal";

fn options(fs: &SimFs) -> Options {
    Options {
        segment_size: 4096,
        auto_compact: false,
        max_segment_age: None,
        ..Options::default()
    }
    .with_io(fs.clone())
}

fn rounds() -> u64 {
    std::env::var("FINN_POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// What a workload did before the power failed (or it finished).
#[derive(Debug, Default)]
struct Run {
    /// Every record whose append was started, in LSN order from 1: key (puts) and payload.
    attempted: Vec<(Option<String>, Vec<u8>)>,
    /// The largest `Wal::durable_lsn` seen: what the WAL acknowledged as durable.
    acked: u64,
    /// A compaction was started.
    compacted: bool,
    /// `prune_through` was called with this LSN.
    pruned: u64,
    /// The error that ended the workload early.
    error: Option<Error>,
}

fn payload(seed: u64, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut p = format!("s{seed}n{n}:").into_bytes();
    p.resize(p.len() + rng.below(600) as usize, b'a' + (n % 26) as u8);
    p
}

/// Runs the workload of `seed` until it ends or an operation fails (the power failed).
fn workload(fs: &SimFs, seed: u64) -> Run {
    let mut run = Run::default();
    run.error = workload_steps(fs, seed, &mut run).err();
    run
}

fn workload_steps(fs: &SimFs, seed: u64, run: &mut Run) -> Result<(), Error> {
    let mut rng = Rng::new(seed);
    // Odd seeds preallocate (the default), even ones grow each segment as they write.
    let options = Options {
        preallocate: seed % 2 == 1,
        ..options(fs)
    };
    let (wal, _) = Wal::open(DIR, options)?;
    let steps = 40 + rng.below(20);
    let compact_at = 15 + rng.below(10);
    let prune_at = compact_at + 5 + rng.below(10);
    let mut result = Ok(());
    for step in 0..steps {
        let n = run.attempted.len();
        let outcome = match rng.below(10) {
            _ if step == compact_at => {
                run.compacted = true;
                wal.compact().map(drop)
            }
            _ if step == prune_at => {
                // Below the acknowledged mark: a checkpoint covering it is durable elsewhere.
                run.pruned = run.acked / 2;
                match wal.prune_through(Lsn::new(run.pruned)) {
                    // The mark fell inside an atomic batch: refused, nothing changed.
                    Err(Error::InvalidLsn { .. }) => Ok(()),
                    other => other.map(drop),
                }
            }
            0 => wal.sync().map(drop),
            1 => {
                let p = payload(seed, n, &mut rng);
                run.attempted.push((None, p.clone()));
                wal.append_with(NewRecord::event(Kind::Session, p), Durability::Sync)
                    .map(drop)
            }
            2 | 3 => {
                let durability = if rng.below(2) == 0 {
                    Durability::Sync
                } else {
                    Durability::None
                };
                let count = 1 + rng.below(4) as usize;
                let records = (0..count)
                    .map(|i| {
                        let p = payload(seed, n + i, &mut rng);
                        run.attempted.push((None, p.clone()));
                        NewRecord::event(Kind::Bead, p)
                    })
                    .collect();
                wal.append_batch(records, durability).map(drop)
            }
            _ => {
                let key = format!("k{}", rng.below(4));
                let p = payload(seed, n, &mut rng);
                run.attempted.push((Some(key.clone()), p.clone()));
                let durability = if rng.below(4) == 0 {
                    Durability::Sync
                } else {
                    Durability::None
                };
                wal.append_with(NewRecord::put(Kind::Memory, key, p), durability)
                    .map(drop)
            }
        };
        run.acked = run.acked.max(wal.durable_lsn().get());
        if let Err(e) = outcome {
            result = Err(e);
            break;
        }
    }
    run.acked = run.acked.max(wal.durable_lsn().get());
    drop(wal);
    result
}

/// Opens `image` and checks it against what the run acknowledged; `Err` names the violation.
fn check_image(image: SimFs, run: &Run) -> Result<(), String> {
    let (wal, _) = Wal::open(DIR, options(&image)).map_err(|e| format!("open failed: {e:?}"))?;
    let mut got: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut last = 0;
    for record in wal
        .iter_from(Lsn::ZERO)
        .map_err(|e| format!("iter failed: {e:?}"))?
    {
        let record = record.map_err(|e| format!("unreadable record after {last}: {e:?}"))?;
        let lsn = record.lsn.get();
        if lsn <= last {
            return Err(format!("LSN {lsn} after {last}"));
        }
        last = lsn;
        let expected = run
            .attempted
            .get(lsn as usize - 1)
            .ok_or_else(|| format!("LSN {lsn} was never appended"))?;
        if record.payload != expected.1 {
            return Err(format!("LSN {lsn} holds other bytes than were appended"));
        }
        got.insert(lsn, record.payload);
    }
    // Puts a later durable put of the same key supersedes (compaction may drop those).
    let superseded = |lsn: u64| {
        let (Some(key), _) = &run.attempted[lsn as usize - 1] else {
            return false;
        };
        (lsn + 1..=run.acked).any(|l| run.attempted[l as usize - 1].0.as_ref() == Some(key))
    };
    for lsn in 1..=run.acked {
        let may_be_gone = lsn <= run.pruned || (run.compacted && superseded(lsn));
        if !got.contains_key(&lsn) && !may_be_gone {
            return Err(format!("acknowledged LSN {lsn} (of {}) is lost", run.acked));
        }
    }
    // After the acknowledged ones: a prefix of what was appended, without gaps.
    let after: Vec<u64> = got.range(run.acked + 1..).map(|(l, _)| *l).collect();
    if after
        .iter()
        .enumerate()
        .any(|(i, l)| *l != run.acked + 1 + i as u64)
    {
        return Err(format!(
            "unacknowledged records after {} are not a prefix: {after:?}",
            run.acked
        ));
    }
    // The recovered WAL takes appends again.
    wal.append(NewRecord::event(Kind::Audit, b"after".to_vec()))
        .map_err(|e| format!("append after recovery failed: {e:?}"))?;
    Ok(())
}

/// Powers the workload of `seed` off after every operation and checks every image.
fn power_off_everywhere(seed: u64, subsets: u64) -> (u64, usize) {
    let full = {
        let fs = SimFs::new();
        let run = workload(&fs, seed);
        assert!(run.acked > 0 && run.compacted && run.pruned > 0, "{run:?}");
        fs.ops()
    };
    let mut images = 0;
    for halt in 0..=full {
        let fs = SimFs::new();
        fs.halt_after(halt);
        let run = workload(&fs, seed);
        let modes = std::iter::once(Crash::DropUnsynced)
            .chain((0..subsets).map(|s| Crash::Subset(seed * 1000 + halt * 31 + s)));
        for mode in modes {
            images += 1;
            if let Err(why) = check_image(fs.crash(mode), &run) {
                panic!(
                    "seed {seed}, power lost after operation {halt} of {full}, {mode:?}, \
                     {} appended, {} acknowledged: {why}",
                    run.attempted.len(),
                    run.acked
                );
            }
        }
    }
    (full, images)
}

#[test]
fn power_loss_at_any_operation_keeps_every_acknowledged_record_and_a_readable_prefix() {
    let subsets = if rounds() > 4 { 16 } else { 4 };
    for seed in 0..rounds() {
        let (ops, images) = power_off_everywhere(seed + 1, subsets);
        eprintln!(
            "seed {}: {ops} operations, {images} images checked",
            seed + 1
        );
    }
}

#[test]
fn an_eio_on_a_wal_sync_is_a_typed_error_poisons_and_loses_nothing_acknowledged() {
    let fs = SimFs::new();
    let (wal, _) = Wal::open(DIR, options(&fs)).unwrap();
    let mut acked = Vec::new();
    for n in 0..20u8 {
        let p = vec![n; 300];
        wal.append(NewRecord::event(Kind::Session, p.clone()))
            .unwrap();
        acked.push(p);
    }
    wal.append_with(
        NewRecord::event(Kind::Session, b"unsynced".to_vec()),
        Durability::None,
    )
    .unwrap();
    fs.fail_next_sync();
    let err = wal
        .append(NewRecord::event(Kind::Session, b"failed".to_vec()))
        .unwrap_err();
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(5), "{err:?}"),
        other => panic!("expected the EIO as Error::Io, got {other:?}"),
    }
    let ops = fs.ops();
    assert!(matches!(
        wal.append(NewRecord::event(Kind::Session, b"later".to_vec())),
        Err(Error::Poisoned)
    ));
    assert!(matches!(wal.sync(), Err(Error::Poisoned)));
    assert_eq!(
        fs.ops(),
        ops,
        "nothing is written or synced after the poison"
    );
    drop(wal);

    let mut seeds = vec![Crash::DropUnsynced];
    seeds.extend((0..16).map(Crash::Subset));
    for mode in seeds {
        let (wal, _) = Wal::open(DIR, options(&fs.crash(mode))).unwrap();
        let got: Vec<Vec<u8>> = wal
            .iter_from(Lsn::ZERO)
            .unwrap()
            .map(|r| r.unwrap().payload)
            .collect();
        assert!(got.len() >= acked.len(), "{mode:?}: {} records", got.len());
        assert_eq!(got[..acked.len()], acked[..], "{mode:?}");
        let tail: &[&[u8]] = &[b"unsynced", b"failed"];
        for (i, p) in got[acked.len()..].iter().enumerate() {
            assert_eq!(
                p.as_slice(),
                tail[i],
                "{mode:?}: a prefix of the unsynced tail"
            );
        }
    }
}

#[test]
fn an_eio_on_any_sync_of_the_workload_is_a_typed_error_and_loses_nothing_acknowledged() {
    // Every sync of a workload in turn fails with EIO: segment creation, appends, seals,
    // compaction output, directory syncs. The call gets the EIO as `Error::Io`, never retries
    // it, and every power-loss image after it keeps what was acknowledged.
    let seed = 5;
    let total = {
        let fs = SimFs::new();
        let run = workload(&fs, seed);
        assert!(run.error.is_none(), "{:?}", run.error);
        fs.syncs()
    };
    for n in 1..=total {
        let fs = SimFs::new();
        fs.fail_nth_sync(n);
        let run = workload(&fs, seed);
        match &run.error {
            Some(Error::Io { source, .. }) if source.raw_os_error() == Some(5) => {}
            // The last sync is the one `Drop` makes; its failure is logged, not returned.
            None if n == total => {}
            other => panic!("sync {n} of {total} failed: the workload ended with {other:?}"),
        }
        // The workload stops at the error; nothing syncs again, the handle's drop included.
        assert_eq!(fs.syncs(), n, "sync {n}: a sync after the failed one");
        let modes = std::iter::once(Crash::DropUnsynced).chain((0..4).map(Crash::Subset));
        for mode in modes {
            if let Err(why) = check_image(fs.crash(mode), &run) {
                panic!("EIO on sync {n} of {total}, {mode:?}: {why}");
            }
        }
    }
}

#[test]
fn compaction_keeps_an_acknowledged_put_whose_newer_put_is_not_durable_yet() {
    // Found by the power-loss test above: compaction dropped an acknowledged put because a
    // newer put of its key existed, although that one was a `None` append a power loss could
    // still take, leaving the key with no value at all.
    let fs = SimFs::new();
    let (wal, _) = Wal::open(DIR, options(&fs)).unwrap();
    let acked = wal
        .append(NewRecord::put(Kind::Memory, "k", b"v1".to_vec()))
        .unwrap();
    while wal.status().rotations == 0 {
        wal.append(NewRecord::event(Kind::Audit, vec![0u8; 500]))
            .unwrap();
    }
    wal.append_with(
        NewRecord::put(Kind::Memory, "k", b"v2".to_vec()),
        Durability::None,
    )
    .unwrap();
    wal.compact().unwrap();
    let image = fs.crash(Crash::DropUnsynced);
    let (wal, _) = Wal::open(DIR, options(&image)).unwrap();
    let record = wal.read(acked).unwrap();
    assert_eq!(record.map(|r| r.payload), Some(b"v1".to_vec()));
}

#[test]
fn the_check_catches_a_wal_that_acknowledges_without_syncing() {
    // The same check against a WAL whose "Sync" appends are really `None` appends and whose
    // acknowledgements are taken at face value: power loss must show lost records, so the
    // check above can fail.
    let fs = SimFs::new();
    let (wal, _) = Wal::open(DIR, options(&fs)).unwrap();
    let mut run = Run::default();
    for n in 0..10u8 {
        let p = vec![n; 200];
        run.attempted.push((None, p.clone()));
        let lsn = wal
            .append_with(NewRecord::event(Kind::Session, p), Durability::None)
            .unwrap();
        run.acked = lsn.get();
    }
    let err = check_image(fs.crash(Crash::DropUnsynced), &run).unwrap_err();
    assert!(err.contains("is lost"), "{err}");
    drop(wal);
}

#[test]
fn a_wal_on_simfs_refuses_a_second_writer() {
    let fs = SimFs::new();
    let (_wal, _) = Wal::open(DIR, options(&fs)).unwrap();
    assert!(matches!(
        Wal::open(DIR, options(&fs)),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn a_wal_on_simfs_does_all_its_file_io_there() {
    // Every operation of open, appends, rotation, compaction, prune, a read-only open and
    // close goes through the Io: nothing of it reaches the real file system.
    let fs = SimFs::new();
    let run = workload(&fs, 7);
    assert!(run.compacted && run.acked > 0);
    let reader = Wal::open_read_only(DIR, options(&fs)).unwrap();
    assert!(reader.last_lsn().get() >= run.acked);
    drop(reader);
    assert!(
        !Path::new("/sim").exists(),
        "the WAL wrote to the real /sim"
    );
    let names: Vec<_> = fs.list(Path::new(DIR));
    assert!(
        names
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "wal")),
        "{names:?}"
    );
}
