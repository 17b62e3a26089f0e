//! Interfaces that come and go while the daemon runs.
//!
//! When a device is deleted the kernel removes the program with it. The
//! daemon then forgets the attachment (so `status` never shows a program
//! that is not there), reports the interface absent (log, `status`,
//! metrics, `/healthz`), and attaches again as soon as a device of that
//! name exists: at its link event, or at the next once-a-second check if
//! the event was lost.

use std::collections::BTreeMap;

use ironpost_ebpf_engine::engine::now_ms;
use serde::Serialize;

use super::{Daemon, requests::rfc3339};
use crate::links::LinkChange;

/// A configured interface the program is not attached to.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Absent {
    /// The interface's name.
    pub interface: String,
    /// Since when it has been unfiltered (RFC 3339).
    pub since: String,
    /// The index of the device the program was last attached to.
    pub last_ifindex: u32,
    /// Why it is not attached: the device is gone, or attaching to the new
    /// device failed (and why).
    pub reason: String,
    #[serde(skip)]
    since_ms: u64,
}

/// The configured interfaces that are absent, by name.
pub(crate) type AbsentInterfaces = BTreeMap<String, Absent>;

/// The index the kernel gives `name` now.
fn index_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

impl Daemon {
    /// A link event: a deleted device loses its attachment at once (even if
    /// a new device took its index), then every configured interface is
    /// checked.
    pub(super) fn on_link(&mut self, change: LinkChange) {
        if let LinkChange::Gone { name, index } = &change
            && let Some(att) = self
                .engine
                .attachments()
                .iter()
                .find(|a| a.ifindex == *index)
                .cloned()
        {
            tracing::debug!("link event: {name} (ifindex {index}) deleted");
            self.lose(&att.interface, att.ifindex, "the device was deleted");
        }
        self.check_interfaces();
    }

    /// Compares every configured interface with the device of that name
    /// now: an attachment whose device is gone or replaced is forgotten,
    /// and a configured interface with a device is attached.
    pub(super) fn check_interfaces(&mut self) {
        for name in self.engine.interfaces().to_vec() {
            let now = index_of(&name);
            let attached = self
                .engine
                .attachments()
                .iter()
                .find(|a| a.interface == name)
                .map(|a| a.ifindex);
            match (attached, now) {
                (Some(was), Some(is)) if was == is => continue,
                (Some(was), Some(_)) => self.lose(&name, was, "the device was replaced"),
                (Some(was), None) => self.lose(&name, was, "the device was deleted"),
                (None, None) => continue,
                (None, Some(_)) => {}
            }
            if let Some(index) = now {
                self.reattach(&name, index);
            }
        }
    }

    /// Forgets the attachment to `name` and reports it absent.
    fn lose(&mut self, name: &str, ifindex: u32, why: &str) {
        self.engine.forget_interface(name);
        *self.interface_losses.entry(name.to_owned()).or_default() += 1;
        tracing::error!(
            "{name} (ifindex {ifindex}): {why}; it is NOT filtered until a device of that \
             name exists again, then ironpost attaches to it"
        );
        let now = now_ms();
        self.absent.insert(
            name.to_owned(),
            Absent {
                interface: name.to_owned(),
                since: rfc3339(now),
                last_ifindex: ifindex,
                reason: why.to_owned(),
                since_ms: now,
            },
        );
    }

    /// Attaches to the device now named `name`; a failure is logged once
    /// per distinct error and tried again at the next check.
    fn reattach(&mut self, name: &str, index: u32) {
        match self.engine.attach_interface(name) {
            Ok(a) => {
                let mode = a.mode.as_str();
                let gap = self
                    .absent
                    .remove(name)
                    .map(|ab| {
                        let ms = now_ms().saturating_sub(ab.since_ms);
                        format!(" after {:.1} s unfiltered", ms as f64 / 1000.0)
                    })
                    .unwrap_or_default();
                tracing::info!("{name} is back (ifindex {index}): attached in {mode} mode{gap}");
            }
            Err(e) => {
                let reason = format!(
                    "attaching to the new device (ifindex {index}) failed: {}",
                    super::requests::chain(&e)
                );
                let now = now_ms();
                let entry = self
                    .absent
                    .entry(name.to_owned())
                    .or_insert_with(|| Absent {
                        interface: name.to_owned(),
                        since: rfc3339(now),
                        last_ifindex: 0,
                        reason: String::new(),
                        since_ms: now,
                    });
                if entry.reason != reason {
                    tracing::error!("{name}: {reason}; trying again every second");
                    entry.reason = reason;
                }
            }
        }
    }

    /// Every configured interface and whether the program is attached to it.
    pub(super) fn interface_states(&self) -> Vec<(String, bool)> {
        let attached = self.engine.attachments();
        self.engine
            .interfaces()
            .iter()
            .map(|n| (n.clone(), attached.iter().any(|a| &a.interface == n)))
            .collect()
    }
}
