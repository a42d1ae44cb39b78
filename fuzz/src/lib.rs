//! The bodies of finn's fuzz targets, one function per target, so each target file is one line
//! and the properties they check are read in one place.
//!
//! Every function takes arbitrary bytes and must never panic, hang or abort; where the input
//! parses, it also checks a property (re-encoding round-trips, recovery is idempotent, a
//! signature only verifies under the key that made it).

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::OnceLock;

use finn_wal::{Lsn, Options, RecoveryMode, Wal};

/// A scratch directory that lives as long as the fuzzing process.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // tmpfs when there is one: the WAL fsyncs on every open, which on a disk would cap
        // the fuzzer at a few dozen executions per second.
        let shm = std::path::Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        builder.prefix("finn-fuzz-");
        let dir = if shm.is_dir() {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        }
        .expect("a scratch directory for the fuzzer");
        dir.keep()
    })
}

fn wal_options(mode: RecoveryMode) -> Options {
    Options {
        recovery_mode: mode,
        segment_size: 64 * 1024,
        preallocate: false,
        auto_compact: false,
        ..Options::default()
    }
}

fn records(wal: &Wal) -> Vec<finn_wal::Record> {
    let mut out = Vec::new();
    if let Ok(iter) = wal.iter_from(Lsn::new(0)) {
        for r in iter {
            match r {
                Ok(r) => out.push(r),
                Err(_) => break,
            }
        }
    }
    out
}

/// The input becomes the only segment of a WAL directory, which is opened in every recovery
/// mode. Whatever the bytes, open either fails with a typed error or succeeds; after a repairing
/// open succeeded, a second open finds nothing left to repair and the same records (recovery is
/// idempotent), and an append continues after the last LSN.
pub fn wal_segment(data: &[u8]) {
    let dir = scratch().join("wal");
    for mode in [
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::TolerateTornTail,
        RecoveryMode::SalvageAll,
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch WAL directory");
        std::fs::write(dir.join("00000000000000000001.wal"), data).expect("write the segment");
        let first = match Wal::open(&dir, wal_options(mode)) {
            Ok((wal, _report)) => {
                let recs = records(&wal);
                drop(wal);
                recs
            }
            Err(_) => continue,
        };
        let (wal, report) = Wal::open(&dir, wal_options(RecoveryMode::AbsoluteConsistency))
            .expect("a WAL that opened once reopens strictly");
        assert!(
            report.repairs.is_empty(),
            "second open repaired again: {report:?}"
        );
        let again = records(&wal);
        assert_eq!(first, again, "recovery is not idempotent");
        let lsn = wal
            .append(finn_wal::NewRecord::event(
                finn_wal::Kind::Audit,
                b"probe".to_vec(),
            ))
            .expect("append after recovery");
        assert!(again.last().is_none_or(|r| r.lsn < lsn), "LSN reused");
    }
}

/// Shipped WAL batches: decoding never panics, and a decoded batch re-encodes to bytes that
/// decode to the same records.
///
/// The batch ends with a CRC-32 of every preceding byte (docs/formats/finn-wal.md); mutations
/// almost never keep it right, so each input is also decoded with that CRC recomputed, which
/// lets the fuzzer reach the frame parser behind it.
pub fn wal_batch(data: &[u8]) {
    let check = |bytes: &[u8]| {
        if let Ok(records) = finn_wal::batch::decode_records(bytes) {
            let again = finn_wal::batch::decode_records(&finn_wal::batch::encode_records(&records))
                .expect("re-encoded batch decodes");
            assert_eq!(records, again);
        }
    };
    check(data);
    if let Some(body_len) = data.len().checked_sub(4) {
        let mut fixed = data[..body_len].to_vec();
        fixed.extend_from_slice(&crc32fast::hash(&fixed).to_le_bytes());
        check(&fixed);
    }
}

fn fuzz_key() -> &'static finn_checkpoint::SigningKey {
    static KEY: OnceLock<finn_checkpoint::SigningKey> = OnceLock::new();
    KEY.get_or_init(|| finn_checkpoint::SigningKey::from_seed(&[7; 32]))
}

/// Checkpoint manifests: decoding and verification never panic and never accept the input
/// unsigned. A manifest that decodes is re-signed with a trusted key: it then verifies and
/// decodes to the same manifest, and no longer verifies once that key is revoked.
pub fn manifest(data: &[u8]) {
    use finn_checkpoint::{Keyring, SignedManifest, manifest::Manifest};
    let key = fuzz_key();
    let keyring = Keyring::trusting(key.verifying_key());
    // Random bytes cannot carry a valid signature by the fuzz key unless the fuzzer found a
    // forgery, which is exactly what would have to fail here.
    if let Ok(m) = SignedManifest::verify(data.to_vec(), &keyring) {
        let again = m.manifest().clone().sign(key);
        assert_eq!(again.bytes(), data, "a verified manifest was not canonical");
    }
    if let Ok((manifest, _signature)) = Manifest::decode(data) {
        for f in &manifest.files {
            // Paths that decoded are safe to join under a state directory.
            let p = std::path::Path::new(f.path.as_ref());
            assert!(p.is_relative(), "absolute path {p:?} decoded");
            assert!(
                p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
                "path {p:?} escapes its directory"
            );
        }
        let signed = manifest.clone().sign(key);
        let verified = SignedManifest::verify(signed.bytes().to_vec(), &keyring)
            .expect("a re-signed manifest verifies");
        let mut expected = manifest;
        expected.signer = key.id();
        assert_eq!(verified.manifest(), &expected);
        let mut revoked = Keyring::trusting(key.verifying_key());
        revoked.revoke(key.id());
        assert!(SignedManifest::verify(signed.bytes().to_vec(), &revoked).is_err());
    }
    if let Ok(path) = finn_checkpoint::CheckpointPath::new(String::from_utf8_lossy(data)) {
        let root = std::path::Path::new("/state");
        let joined = path.under(root);
        let rest = joined
            .strip_prefix(root)
            .expect("a checkpoint path stays under its root");
        assert!(
            rest.components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{path} escapes its directory"
        );
    }
}

/// Identity documents (BEAUVOIR.md): parsing and validation never panic, whatever the bytes.
pub fn identity(data: &[u8]) {
    if let Ok(doc) = finn_identity::parse(data) {
        let _ = finn_identity::validate(&doc);
    }
    let lossy = String::from_utf8_lossy(data);
    let doc = finn_identity::parse_str(&lossy);
    let _ = finn_identity::validate(&doc);
}

fn beads_store() -> &'static finn_beads::Store {
    static STORE: OnceLock<finn_beads::Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut o = finn_beads::Options::default();
        o.wal.segment_size = 1 << 20;
        o.wal.preallocate = false;
        o.wal.durability = finn_wal::Durability::None;
        finn_beads::Store::open(scratch().join("beads"), o).expect("open the fuzz bead store")
    })
}

/// Beads `issues.jsonl` import: the line reader and the importer never panic; every line is
/// either imported, reported, or refused with a typed error.
pub fn beads_jsonl(data: &[u8]) {
    for line in finn_beads::Reader::new(Cursor::new(data)) {
        if let Ok((_, finn_beads::Line::Issue(b))) = line {
            let _ = finn_beads::Limits::default().check_imported(&b);
        }
    }
    let store = beads_store();
    let _ = store.import_reader(Cursor::new(data), &finn_beads::ImportOptions::default());
}

fn learning_store() -> &'static finn_learning::LearningStore {
    static STORE: OnceLock<finn_learning::LearningStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut o = finn_learning::StoreOptions::default();
        o.durability = finn_wal::Durability::None;
        o.wal.segment_size = 1 << 20;
        o.wal.preallocate = false;
        finn_learning::LearningStore::open(scratch().join("learning"), o)
            .expect("open the fuzz learning store")
            .0
    })
}

/// Learnings import (Loa files and the anchors' store files): parsers and the store's import
/// never panic, and a parsed Loa file re-exports to bytes that parse to the same learnings.
pub fn learnings_import(data: &[u8]) {
    use finn_learning::format;
    if let Ok(file) = format::parse_loa_file(data) {
        let bytes = format::write_loa_file(&file.header, &file.learnings);
        let again = format::parse_loa_file(&bytes).expect("an exported Loa file parses");
        assert_eq!(file.learnings.len(), again.learnings.len());
    }
    let _ = format::parse_anchor_store(data);
    let _ = format::parse_anchor_pending(data);
    let _ = learning_store().import_loa_bytes("fuzz.json", data);
}
