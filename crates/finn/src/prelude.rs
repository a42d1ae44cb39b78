//! The names most programs need, in one import: `use finn::prelude::*;`.

pub use crate::config::{Config, ConfigError, StoreUrl};

#[cfg(feature = "wal")]
pub use finn_wal::{Durability, Kind, Lsn, NewRecord, Op, Record, Wal};

#[cfg(all(feature = "recovery", feature = "scheduler"))]
pub use crate::runtime::{Finn, FinnBuilder};
