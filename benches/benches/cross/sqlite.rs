//! SQLite as the peers measured it: WAL journal, `synchronous=FULL` (an fsync per commit), one
//! connection per writer thread, `BEGIN IMMEDIATE` transactions.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

/// Opens (creating) the database with the peer configuration.
pub fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open sqlite");
    // Writers of a contended benchmark wait instead of failing; long waits are part of
    // SQLite's result (it has no cross-connection group commit).
    conn.busy_timeout(Duration::from_secs(120))
        .expect("busy timeout");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("journal_mode=WAL");
    assert_eq!(mode.to_lowercase(), "wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("synchronous=FULL");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS log(id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    )
    .expect("create table");
    conn
}

/// One transaction inserting `rows` rows of `payload`; durable at return.
pub fn insert(conn: &mut Connection, payload: &[u8], rows: usize) {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .expect("begin immediate");
    {
        let mut st = tx
            .prepare_cached("INSERT INTO log(data) VALUES (?1)")
            .expect("prepare insert");
        for _ in 0..rows {
            st.execute([payload]).expect("insert");
        }
    }
    tx.commit().expect("commit");
}

/// Opens and reads every row's blob; returns (rows, bytes).
pub fn scan(path: &Path) -> (u64, u64) {
    let conn = Connection::open(path).expect("open sqlite");
    let mut st = conn
        .prepare("SELECT data FROM log ORDER BY id")
        .expect("prepare scan");
    let mut rows = st.query([]).expect("scan");
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(row) = rows.next().expect("row") {
        let data = row.get_ref(0).expect("column").as_blob().expect("blob");
        bytes += data.len() as u64;
        n += 1;
    }
    (n, bytes)
}
