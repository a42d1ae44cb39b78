//! Integration tests of finn-breaker: the transition table, the anchor scenarios (anchors.md
//! §11.6), concurrency, events and snapshots.

mod anchor;
mod concurrency;
mod events;
mod snapshot;
mod transitions;
mod util;
