//! An async job scheduler with jitter, per-task circuit breakers, real timeouts and mutual exclusion.
//!
//! **Status: not built yet.** This crate is a placeholder in the finn workspace; its issue describes
//! what it will hold. Nothing here is usable.
//!
//! Most users want the [`finn`](https://docs.rs/finn) facade.
