//! Property test: any sequence of appends, batches, rotations, compactions, prunes and reopens
//! replays the same keyed state and LSN order as a simple in-memory model.

mod common;

use std::collections::BTreeMap;

use common::all_records;
use finn_wal::{Durability, Kind, Lsn, NewRecord, Op, Options, Record, Wal};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Action {
    Append(RecSpec, bool),
    Batch(Vec<RecSpec>),
    Rotate,
    Compact,
    /// Prune through this fraction (/255) of the last LSN.
    Prune(u8),
    Reopen,
}

#[derive(Clone, Debug)]
struct RecSpec {
    kind: u8,
    op: u8,
    key: u8,
    payload: Vec<u8>,
}

impl RecSpec {
    fn to_new(&self) -> NewRecord {
        let kind = [Kind::Session, Kind::Bead, Kind::User(7)][self.kind as usize % 3];
        let key = format!("key-{}", self.key % 4);
        match self.op % 3 {
            0 => NewRecord::event(kind, self.payload.clone()),
            1 => NewRecord::put(kind, key, self.payload.clone()),
            _ => NewRecord::delete(kind, key),
        }
    }
}

fn spec() -> impl Strategy<Value = RecSpec> {
    (
        0u8..3,
        0u8..3,
        0u8..4,
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(kind, op, key, payload)| RecSpec {
            kind,
            op,
            key,
            payload,
        })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (spec(), any::<bool>()).prop_map(|(s, sync)| Action::Append(s, sync)),
        2 => proptest::collection::vec(spec(), 1..5).prop_map(Action::Batch),
        1 => Just(Action::Rotate),
        1 => Just(Action::Compact),
        1 => any::<u8>().prop_map(Action::Prune),
        1 => Just(Action::Reopen),
    ]
}

type State = BTreeMap<(Kind, String), Vec<u8>>;

fn fold<'a>(records: impl Iterator<Item = &'a Record>) -> State {
    let mut state = State::new();
    for r in records {
        match r.op {
            Op::Put => {
                state.insert((r.kind, r.key.clone().unwrap()), r.payload.clone());
            }
            Op::Delete => {
                state.remove(&(r.kind, r.key.clone().unwrap()));
            }
            Op::Event => {}
        }
    }
    state
}

fn options() -> Options {
    Options {
        segment_size: 4096,
        auto_compact: false,
        ..Options::default()
    }
}

fn check(wal: &Wal, model: &[Record], mark: u64) {
    let got = all_records(wal);
    assert!(got.windows(2).all(|w| w[0].lsn < w[1].lsn), "LSN order");
    let by_lsn: BTreeMap<u64, &Record> = model.iter().map(|r| (r.lsn.get(), r)).collect();
    for r in &got {
        let m = by_lsn.get(&r.lsn.get()).expect("record not in model");
        assert_eq!(
            (r.kind, r.op, &r.key, &r.payload),
            (m.kind, m.op, &m.key, &m.payload)
        );
    }
    assert_eq!(wal.last_lsn(), model.last().map_or(Lsn::ZERO, |r| r.lsn));
    let live = |r: &&Record| r.lsn.get() > mark;
    // Every event above the confirmed mark is retained, and the newest keyed record per key.
    let mut newest: BTreeMap<(Kind, String), u64> = BTreeMap::new();
    for r in model.iter().filter(live) {
        match &r.key {
            Some(k) if r.op != Op::Event => {
                newest.insert((r.kind, k.clone()), r.lsn.get());
            }
            _ => assert!(got.iter().any(|g| g.lsn == r.lsn), "event {} lost", r.lsn),
        }
    }
    for lsn in newest.values() {
        assert!(
            got.iter().any(|g| g.lsn.get() == *lsn),
            "newest keyed record {lsn} lost"
        );
    }
    assert_eq!(
        fold(got.iter().filter(live)),
        fold(model.iter().filter(live))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn wal_matches_in_memory_model(actions in proptest::collection::vec(action(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), options()).unwrap();
        let mut model: Vec<Record> = Vec::new();
        let mut mark = 0u64;
        for a in &actions {
            match a {
                Action::Append(s, sync) => {
                    let d = if *sync { Durability::Sync } else { Durability::None };
                    let lsn = wal.append_with(s.to_new(), d).unwrap();
                    prop_assert_eq!(lsn.get(), model.len() as u64 + 1);
                    model.push(wal.read(lsn).unwrap().unwrap());
                }
                Action::Batch(specs) => {
                    let lsns = wal
                        .append_batch(specs.iter().map(RecSpec::to_new).collect(), Durability::None)
                        .unwrap();
                    for lsn in lsns {
                        model.push(wal.read(lsn).unwrap().unwrap());
                    }
                }
                Action::Rotate => wal.rotate().unwrap(),
                Action::Compact => {
                    wal.compact().unwrap();
                }
                Action::Prune(frac) => {
                    let through = model.len() as u64 * u64::from(*frac) / 255;
                    wal.prune_through(Lsn::new(through)).unwrap();
                    mark = mark.max(through);
                }
                Action::Reopen => {
                    drop(wal);
                    let (w, report) = Wal::open(dir.path(), options()).unwrap();
                    prop_assert!(report.is_clean(), "{:?}", report);
                    wal = w;
                }
            }
            check(&wal, &model, mark);
        }
        drop(wal);
        let (wal, _) = Wal::open(dir.path(), options()).unwrap();
        check(&wal, &model, mark);
    }
}
