//! `cargo xtask demo` (filled in below).
use std::path::Path;

use anyhow::Result;

use crate::Tools;

pub fn demo(_tools: &Tools, _root: &Path) -> Result<()> {
    anyhow::bail!("demo: not written yet")
}
