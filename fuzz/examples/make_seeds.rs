//! Writes the small synthetic seed corpora under `fuzz/seeds/<target>/`.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds` (run from the workspace
//! root). The seeds are committed; rerun this only when a format changes. The real-world
//! fixtures in `../shared/fixtures` are never copied here; `cargo xtask fuzz` passes them to
//! the fuzzer as extra read-only corpora when they are present.

use std::path::Path;

use finn_checkpoint::manifest::{ContentHash, FileEntry, LineageId, Manifest};
use finn_checkpoint::{CheckpointPath, Codec, Lsn, SigningKey};
use finn_wal::{Durability, Kind, NewRecord, Options, Wal};

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    println!("{} ({} bytes)", dir.join(name).display(), bytes.len());
}

fn main() {
    let seeds = Path::new("fuzz/seeds");

    // WAL segments: a clean one and one with a torn tail.
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        preallocate: false,
        segment_size: 64 * 1024,
        auto_compact: false,
        ..Options::default()
    };
    let (wal, _) = Wal::open(tmp.path(), opts).unwrap();
    wal.append(NewRecord::put(Kind::Memory, "k1", b"v1".to_vec()))
        .unwrap();
    wal.append(NewRecord::event(Kind::Session, b"hello".to_vec()))
        .unwrap();
    wal.append(NewRecord::delete(Kind::Memory, "k1")).unwrap();
    wal.append_batch(
        vec![
            NewRecord::event(Kind::Bead, b"a".to_vec()),
            NewRecord::put(Kind::Config, "c", b"{}".to_vec()),
        ],
        Durability::Sync,
    )
    .unwrap();
    let records: Vec<_> = wal
        .iter_from(Lsn::new(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(wal);
    let mut segs: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    let seg = std::fs::read(&segs[0]).unwrap();
    put(&seeds.join("wal_segment"), "clean", &seg);
    put(
        &seeds.join("wal_segment"),
        "torn-tail",
        &seg[..seg.len() - 5],
    );

    // Shipped batches.
    let batch = finn_wal::batch::encode_records(&records);
    put(&seeds.join("wal_batch"), "five-records", &batch);
    put(
        &seeds.join("wal_batch"),
        "empty",
        &finn_wal::batch::encode_records(&[]),
    );

    // A manifest signed by the fuzz target's own key (seed [7; 32]), so verification passes
    // and mutations explore what lies behind it.
    let key = SigningKey::from_seed(&[7; 32]);
    let files = ["identity/BEAUVOIR.md", "state.json"]
        .iter()
        .map(|p| FileEntry {
            path: CheckpointPath::new(*p).unwrap(),
            size: 12,
            blake3: ContentHash::of(b"hello world!"),
            codec: Codec::Raw,
            stored_size: 12,
        })
        .collect();
    let manifest = Manifest {
        version: 3,
        created_at_ms: 1_700_000_000_000,
        covered_lsn: Lsn::new(42),
        writer_epoch: 2,
        lineage: LineageId::generate(),
        parent: None,
        previous: None,
        encryption_key_id: String::new(),
        signer: key.id(),
        metadata: [("agent".to_owned(), "fuzz".to_owned())].into(),
        files,
    };
    put(
        &seeds.join("manifest"),
        "signed",
        manifest.sign(&key).bytes(),
    );
    put(&seeds.join("manifest"), "path", b"identity/BEAUVOIR.md");

    put(
        &seeds.join("identity"),
        "BEAUVOIR.md",
        b"# Fuzz Agent - Identity Document\n\n> **Version**: 1.2.0\n\n## Identity\n\nI am the fuzz agent.\n\n\
          ## Core Principles\n\n### 1. Survival is a Feature\n\nAcknowledged writes outlive the disk.\n\n\
          ## Interaction Style\n\n### Concise\n\n- Lead with the answer\n\n\
          ## Boundaries\n\n### What I Won't Do\n\n1. **Lose an acknowledged write**\n\n\
          ## Recovery Protocol\n\n```\n1. restore\n2. replay\n```\n",
    );

    put(
        &seeds.join("beads_jsonl"),
        "issues.jsonl",
        br#"{"id":"fz-1","title":"First","description":"d","status":"open","priority":1,"issue_type":"task","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","labels":["a"]}
{"id":"fz-2","title":"Second","status":"closed","priority":2,"issue_type":"bug","created_at":"2026-01-02T00:00:00Z","updated_at":"2026-01-03T00:00:00Z","closed_at":"2026-01-03T00:00:00Z","dependencies":[{"issue_id":"fz-2","depends_on_id":"fz-1","type":"blocks","created_at":"2026-01-02T00:00:00Z"}],"comments":[{"id":1,"issue_id":"fz-2","author":"x","text":"c","created_at":"2026-01-02T00:00:00Z"}]}
{"_type":"memory","key":"m","value":"v"}
"#,
    );

    put(
        &seeds.join("learnings_import"),
        "loa.json",
        br#"{"category":"pattern","tier":"framework","learnings":[{"id":"FP-001","tier":"framework","type":"pattern","title":"T","trigger":"When x","solution":"Do y","verified":true,"status":"superseded","quality_gates":{"discovery_depth":9,"reusability":8,"trigger_clarity":7,"verification":6},"tags":["a","b"],"created":"2026-02-02T00:00:00Z"},{"id":"FP-002","trigger":"t","solution":"s","context":"c"}],"extraction_date":"2026-02-02"}"#,
    );
    put(
        &seeds.join("learnings_import"),
        "anchor-store.json",
        br#"{"version":"1.0.0","learnings":[{"id":"3f2c1a9e-8b7d-4c6e-9f10-2a3b4c5d6e7f","created":"2026-01-01T10:00:00.000Z","source":"error-cycle","trigger":"tool:bash:error","pattern":"p","solution":"s","gates":{"discovery_depth":5,"reusability":5,"trigger_clarity":5,"verification":5},"target":"openclaw","status":"active","effectiveness":{"applications":3,"successes":2,"failures":1,"last_applied":"2026-01-02T00:00:00.000Z"}}]}"#,
    );
}
