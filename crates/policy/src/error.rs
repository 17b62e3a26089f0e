//! Why a policy change was refused or failed.

/// A refused or failed policy change. Whatever the variant, the policy and
/// the maps are as they were before the change.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A map write failed (the kernel refused it).
    #[error("map {map}: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The kernel's or the loader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The client cancelled the change before it was complete; the
    /// writes made so far were undone.
    #[error("cancelled by the client; nothing was changed")]
    Cancelled,
    /// The entry is set by the configuration file, which alone changes it.
    #[error("{0}")]
    ConfigOwned(String),
    /// The change does not fit in a map.
    #[error("{0}")]
    Capacity(String),
    /// The entry to change does not exist.
    #[error("{0}")]
    NotFound(String),
}

impl PolicyError {
    /// A failed write to `map`.
    pub fn map(map: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Map {
            map,
            source: Box::new(source),
        }
    }
}
