//! The signing key `finn init` creates.

use std::path::PathBuf;

use anyhow::Result;

use super::Context;

/// Creates the configured signing key if it is missing; returns its path when one exists.
#[cfg(feature = "checkpoint")]
pub(crate) fn ensure_signing_key(ctx: &Context) -> Result<Option<PathBuf>> {
    use anyhow::Context as _;
    let path = ctx.config.signing_key_path();
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        finn::checkpoint::SigningKey::generate()
            .save_new(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Some(path))
}

/// Without finn-checkpoint there is nothing to sign with.
#[cfg(not(feature = "checkpoint"))]
pub(crate) fn ensure_signing_key(ctx: &Context) -> Result<Option<PathBuf>> {
    let _ = ctx;
    Ok(None)
}
