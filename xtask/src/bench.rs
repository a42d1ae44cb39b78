//! `cargo xtask bench`: no benchmarks yet. The benchmark issue fills this task; until then it says
//! so and succeeds, so `cargo xtask ci` can already call it.

use anyhow::Result;

pub(crate) fn run(_args: &[String]) -> Result<()> {
    println!("bench: no benchmarks yet");
    Ok(())
}
