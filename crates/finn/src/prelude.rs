//! The names most programs need, in one import: `use finn::prelude::*;`.

pub use crate::config::{Config, ConfigError, StoreUrl};
