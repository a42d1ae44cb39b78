//! `finn keys {generate, id}`.

use std::path::PathBuf;

use anyhow::Result;

use super::Context;

/// Creates the configured signing key if it is missing; returns its path when one exists.
pub(crate) fn ensure_signing_key(ctx: &Context) -> Result<Option<PathBuf>> {
    let _ = ctx;
    // Signing keys come from finn-checkpoint; without it there is nothing to sign with.
    Ok(None)
}
