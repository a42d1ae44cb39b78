//! Integration tests of finn-learning, one module per topic.
//!
//! - `scenarios`: one test per learning scenario of the anchors (anchors.md §11.4).
//! - `weaknesses`: one test per learning weakness of the anchors (anchors.md §5.5) showing it
//!   cannot happen here.
//! - `fixtures`: the real Loa learnings files in `../shared/fixtures/learnings/`.
//! - `lifecycle`: transitions, audit trail, effectiveness and ranking.
//! - `corruption`: damaged snapshots and exports are quarantined and nothing is lost.
//! - `crash`: SIGKILL torture of a child process writing to the store.

mod corruption;
mod crash;
mod fixtures;
mod lifecycle;
mod scenarios;
mod util;
mod weaknesses;
