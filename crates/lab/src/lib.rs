//! Ironpost's lab: what the demo, the kernel tests and the benchmarks share.
//!
//! - [`packet`]: crafted frames for BPF_PROG_TEST_RUN.
//! - [`netns`]: a network namespace joined to the host by a veth pair,
//!   removed again on drop, and helpers to send traffic from inside it.
#![deny(missing_docs)]

pub mod frames;
pub mod model;
pub mod netns;
pub mod packet;

pub use netns::{Lab, LabError, parse_ping_received, xdp_attached};

/// Environment variable that skips tests needing root and a kernel with XDP.
pub const SKIP_KERNEL_ENV: &str = "IRONPOST_SKIP_KERNEL_TESTS";

/// Whether a kernel test should run: `false` (the test returns early) when
/// `IRONPOST_SKIP_KERNEL_TESTS=1`; panics when not root, so a suite run
/// without the privileges fails instead of passing silently.
pub fn kernel_tests_enabled() -> bool {
    if std::env::var(SKIP_KERNEL_ENV).is_ok_and(|v| v == "1") {
        eprintln!("skipping kernel test ({SKIP_KERNEL_ENV}=1)");
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "kernel tests need root (they load XDP programs and create network namespaces); \
         run as root or set {SKIP_KERNEL_ENV}=1 to skip them"
    );
    true
}
