//! Identity documents (BEAUVOIR.md): markdown parsing, validation and debounced hot reload.
//!
//! **Status: not built yet.** This crate is a placeholder in the finn workspace; its issue describes
//! what it will hold. Nothing here is usable.
//!
//! Most users want the [`finn`](https://docs.rs/finn) facade.
