//! `ironpost reload`.

use std::path::Path;

use hyper::Method;
use ironpost_api::{Changed, path};
use ironpost_core::printable;

use crate::client::Client;

/// `ironpost reload`.
pub fn reload(socket: &Path) -> anyhow::Result<()> {
    let c: Changed = Client::new(socket).call(Method::POST, path::RELOAD, None::<&()>)?;
    for n in &c.notes {
        println!("{}", printable(n));
    }
    println!(
        "configuration reloaded: {} added, {} updated, {} removed",
        c.added, c.updated, c.removed
    );
    Ok(())
}
