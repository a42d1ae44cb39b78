//! finn-recovery integration tests, one binary.
//!
//! - `aside`: retention of `recovery/aside/` sets.
//! - `authority`: which state wins at boot: an intact local state against the remote (keep,
//!   replace when behind on the same lineage or damaged, fork).
//! - `scenarios`: the cascade's behaviour with in-process sources, and every recovery scenario of
//!   the anchors (`anchors.md` §11.3) mapped to a test (see the table at the top of the module).
//! - `end_to_end`: a real local WAL, real object stores (LocalFileSystem; moto via
//!   `FINN_TEST_S3_ENDPOINT`) and a real git bare repository.
//! - `shipped`: shipped WAL after a restored base: holes, WAL for a base restored from git.
//! - `tamper`: modified objects and manifests, revoked keys, path escapes, symlinks.
//! - `boot_loop`: boot-loop detection across real processes (the test binary re-executes itself).
//! - `crash`: SIGKILL at random points of a restore, in a child process.
//! - `failpoints`: a crash (a panicking fail point) at every step of the restore swap, then a
//!   normal boot.

mod aside;
mod authority;
mod boot_loop;
mod crash;
mod end_to_end;
mod failpoints;
mod scenarios;
mod shipped;
mod tamper;
mod util;
