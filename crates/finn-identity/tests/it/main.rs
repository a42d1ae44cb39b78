//! Integration tests of finn-identity: one binary, grouped by what they exercise.

mod anchors;
mod change_log;
mod props;
mod shared_fixture;
mod util;
mod watch;
mod weaknesses;
