//! Where a flood's two sides run. On a real host the traffic comes from
//! elsewhere and the receiving CPU does nothing but receive; on the veth
//! pair the generator's XDP_TX hands each batch to the receiver's NAPI in
//! softirq on the generator's own CPU, so the two would share it. With
//! [`Placement::Dedicated`] the host end's NAPI runs in its own kernel
//! thread, pinned to one CPU, and the generator is pinned to another.

use anyhow::{Context as _, Result, ensure};

/// Which CPUs the generator and the receiver run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The receiver's NAPI thread on `receiver`, the generator on
    /// `generator`.
    Dedicated { generator: usize, receiver: usize },
    /// Both on whichever CPU the generator runs on (the veth's default).
    Shared,
}

impl Placement {
    /// Dedicated placement on the first two CPUs this process may use.
    pub fn dedicated() -> Result<Self> {
        // SAFETY: an all-zero cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: a live set of the size passed; pid 0 is this thread.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        ensure!(
            rc == 0,
            "reading this process's CPU affinity: {}",
            std::io::Error::last_os_error()
        );
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE; `set` is live.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .take(2)
            .collect();
        match cpus[..] {
            [generator, receiver] => Ok(Self::Dedicated {
                generator,
                receiver,
            }),
            _ => anyhow::bail!(
                "the floods give the generator and the receiver a CPU each, and this process \
                 may use only {} CPU(s); pass --shared-cpu to run both on one",
                cpus.len()
            ),
        }
    }

    /// After the receiver's XDP program is attached to `dev` (veth has
    /// NAPI only while one is): moves its NAPI into kernel threads
    /// (`threaded` in sysfs) on the receiver's CPU.
    pub fn receiver_attached(self, dev: &str) -> Result<()> {
        let Self::Dedicated { receiver, .. } = self else {
            return Ok(());
        };
        let knob = format!("/sys/class/net/{dev}/threaded");
        std::fs::write(&knob, "1").with_context(|| format!("writing 1 to {knob}"))?;
        let prefix = format!("napi/{dev}-");
        let mut threads = 0;
        for entry in std::fs::read_dir("/proc").context("listing /proc")? {
            let entry = entry?;
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            // A process may end while the list is read.
            let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            if comm.trim_end().starts_with(&prefix) {
                pin(pid, receiver).with_context(|| format!("pinning {}", comm.trim_end()))?;
                realtime(pid).with_context(|| format!("raising {}", comm.trim_end()))?;
                threads += 1;
            }
        }
        ensure!(threads > 0, "{dev} has no NAPI thread after {knob} was set");
        Ok(())
    }

    /// In the generator's thread, before it sends.
    pub fn generator_starts(self) -> Result<()> {
        match self {
            Self::Dedicated { generator, .. } => pin(0, generator),
            Self::Shared => Ok(()),
        }
    }

    /// How the report describes it.
    pub fn describe(self) -> String {
        match self {
            Self::Dedicated {
                generator,
                receiver,
            } => format!(
                "The generator runs on CPU {generator}; the host end's NAPI runs in its own \
                 kernel thread (`threaded` NAPI) pinned to CPU {receiver}, so the receiver has \
                 a CPU of its own, as on a host whose traffic comes from the network."
            ),
            Self::Shared => "The generator and the receiver share one CPU (`--shared-cpu`): the \
                 veth hands each batch to the receiver's NAPI in softirq on the generator's \
                 CPU, so the rate mixes the two."
                .to_owned(),
        }
    }
}

/// Pins thread `tid` (0: the calling thread) to `cpu`.
fn pin(tid: i32, cpu: usize) -> Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from this process's affinity mask, so it is below
    // CPU_SETSIZE; `set` is a live cpu_set_t.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a live set of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    ensure!(
        rc == 0,
        "pinning thread {tid} to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// Gives thread `tid` a real-time priority (SCHED_FIFO 50), so that, like
/// receive processing in softirq on a host, no ordinary task on its CPU
/// (the daemon under test, a kworker freeing the last receiver's maps)
/// takes turns with it. The kernel's real-time throttling still leaves
/// other tasks 5% of each second: a flood longer than about a second
/// (`--frames` well above the default) loses that share at its end, for
/// every receiver alike.
fn realtime(tid: i32) -> Result<()> {
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: a live sched_param; the call only reads it.
    let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
    ensure!(
        rc == 0,
        "setting SCHED_FIFO 50 on thread {tid}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
