//! The durable file primitives this crate uses: finn-wal's, so there is one implementation.

pub(crate) use finn_wal::fs::{sync_dir, write_atomic};
