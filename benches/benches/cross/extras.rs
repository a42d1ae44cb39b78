//! Numbers criterion cannot hold (bytes uploaded, record counts, group-commit factors), one JSON
//! object per line in `$FINN_BENCH_OUT/extras.jsonl`; the xtask's report reads them by id.

use std::io::Write;
use std::path::PathBuf;

fn path() -> PathBuf {
    std::env::var_os("FINN_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../target/finn-bench"))
        .join("extras.jsonl")
}

/// Appends `{"id": id, ...fields}`. A failure to write is reported and otherwise ignored: the
/// timing numbers in criterion's output stay valid without the extras.
pub fn note(id: &str, fields: serde_json::Value) {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), id.into());
    if let serde_json::Value::Object(map) = fields {
        object.extend(map);
    }
    let line = serde_json::Value::Object(object).to_string();
    let path = path();
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
        })
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        eprintln!(
            "finn-benches: cannot record {id} in {}: {e}",
            path.display()
        );
    }
}
