//! Whether this process may load and attach XDP programs.

/// CAP_NET_ADMIN.
const CAP_NET_ADMIN: u32 = 12;
/// CAP_SYS_ADMIN.
const CAP_SYS_ADMIN: u32 = 21;
/// CAP_PERFMON.
const CAP_PERFMON: u32 = 38;
/// CAP_BPF.
const CAP_BPF: u32 = 39;

/// True when running as root or with the capabilities XDP needs.
pub fn can_load_xdp() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_caps(&s))
        .is_some_and(caps_suffice)
}

/// The CapEff bit set from the text of /proc/self/status.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn caps_suffice(caps: u64) -> bool {
    let has = |c: u32| caps & (1 << c) != 0;
    has(CAP_NET_ADMIN) && (has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_capeff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_caps(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_caps("Name: x\n"), None);
    }

    #[test]
    fn which_caps_suffice() {
        assert!(caps_suffice(0x1ff_ffff_ffff));
        assert!(!caps_suffice(0));
        assert!(
            !caps_suffice(1 << CAP_BPF | 1 << CAP_PERFMON),
            "no NET_ADMIN"
        );
        assert!(caps_suffice(
            1 << CAP_BPF | 1 << CAP_PERFMON | 1 << CAP_NET_ADMIN
        ));
        assert!(caps_suffice(1 << CAP_SYS_ADMIN | 1 << CAP_NET_ADMIN));
    }
}
