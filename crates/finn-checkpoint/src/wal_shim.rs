//! TEMPORARY stand-ins for finn-wal items until that crate lands (one-line switch each).
#![allow(missing_docs, dead_code)]

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Lsn(u64);
impl Lsn {
    pub const ZERO: Lsn = Lsn(0);
    pub const fn new(v: u64) -> Lsn {
        Lsn(v)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
    pub fn next(self) -> Lsn {
        Lsn(self.0 + 1)
    }
}
impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
#[derive(Debug, thiserror::Error)]
#[error("wal")]
pub struct WalError;

pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
