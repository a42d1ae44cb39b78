//! Integration tests of finn-checkpoint: one binary, one module per concern.

mod delta;
mod faults;
mod fencing;
mod git;
mod incremental;
mod levels;
mod lineage;
mod pitr;
mod protocol;
mod race;
mod request_cost;
mod retention;
mod ship;
mod shipper;
mod tamper;
mod util;
mod verify;
