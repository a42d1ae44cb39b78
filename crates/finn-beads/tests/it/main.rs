//! Integration tests of finn-beads, one binary.
//!
//! - `interop`: the real 587-bead `issues.jsonl` from `../shared/fixtures/beads/` (round trip, ready set)
//! - `store`: the write path, validation, replay and snapshots
//! - `ready`: `bd ready` semantics on small hand-built graphs
//! - `queue`: claims, leases, handoffs; 8 threads and 4 processes on one queue
//! - `crash`: SIGKILL torture of a writer process
//! - `run_state`: the run / sprint / circuit-breaker state machine
//! - `restore`: a snapshot restored through the finn-recovery cascade, replay after its LSN
//! - `anchors`: the beads scenarios of anchors.md §11.5 and the weaknesses of §6.8

mod anchors;
mod crash;
mod interop;
mod queue;
mod ready;
mod restore;
mod run_state;
mod store;
mod util;
