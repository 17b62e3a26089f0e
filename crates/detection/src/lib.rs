//! Detection and response: the detectors turn what the datapath signals
//! into alerts ([`PacketDetector`]); the responder decides, alone, whether
//! an alert blocks its source, for how long, and what is never blocked
//! ([`Responder`], [`Shield`]). Nothing here touches the kernel.
#![deny(missing_docs)]

pub mod detector;
pub mod response;

pub use detector::{Outcome, PacketDetector};
pub use response::{Decision, Responder, Shield};
