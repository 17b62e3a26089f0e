//! Pinned XDP links: a filter that outlives the daemon.
//!
//! Each interface's XDP link is pinned in bpffs as `<pin dir>/xdp-<name>`.
//! A pinned link stays attached, with its program and that program's maps,
//! when the daemon exits or is killed. The next daemon loads a fresh
//! program with fresh maps, writes the whole policy into them, and only
//! then swaps its program into the pinned link (`BPF_LINK_UPDATE`, one
//! atomic step): the interface is filtered at every instant of a restart
//! or an upgrade, whatever the new version's map layout.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, LinkError, PinnedLink};
use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{AttachedMode, EngineError};

/// Where bpffs is mounted when nothing else is.
pub const BPF_FS: &str = "/sys/fs/bpf";
/// The default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ironpost";
/// `statfs` type of bpffs.
const BPF_FS_MAGIC: libc::c_long = 0xcafe_4a11;

fn pin_err(path: &Path, message: impl Into<String>, source: Option<io::Error>) -> EngineError {
    EngineError::Pin {
        path: path.to_owned(),
        message: message.into(),
        source: source.map(|e| Box::new(e) as _),
    }
}

fn on_bpffs(path: &Path) -> io::Result<bool> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: an all-zero statfs is a valid value for the kernel to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid, writable statfs;
    // both outlive the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as libc::c_long == BPF_FS_MAGIC)
}

/// Makes `dir` ready for pins: bpffs is mounted on [`BPF_FS`] if it is not
/// yet (it is not at boot on every distribution), then `dir` is created. A
/// directory outside bpffs is refused: nothing can be pinned there.
pub fn prepare(dir: &Path) -> Result<(), EngineError> {
    let root = Path::new(BPF_FS);
    if dir.starts_with(root) && !on_bpffs(root).unwrap_or(false) {
        let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
        let (src, target, fstype) = (c("bpf"), c(BPF_FS), c("bpf"));
        // SAFETY: NUL-terminated strings that outlive the call; no data.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(pin_err(
                root,
                "bpffs is not mounted here and mounting it failed",
                Some(io::Error::last_os_error()),
            ));
        }
        tracing::info!("mounted bpffs on {BPF_FS}");
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| pin_err(dir, "creating the pin directory failed", Some(e)))?;
    match on_bpffs(dir) {
        Ok(true) => Ok(()),
        Ok(false) => Err(pin_err(
            dir,
            format!("not on a bpffs (mount one there, or use a directory under {BPF_FS})"),
            None,
        )),
        Err(e) => Err(pin_err(dir, "cannot stat the pin directory", Some(e))),
    }
}

/// The pin path of `interface`'s XDP link.
pub fn link_path(dir: &Path, interface: &str) -> PathBuf {
    dir.join(format!("xdp-{interface}"))
}

/// The pinned links in `dir`: interface name and path.
pub fn pinned(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_prefix("xdp-")?.to_owned();
            Some((name, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Removes the pin of `interface`'s link: the program leaves the interface
/// unless a running daemon still holds the link. Whether there was one.
pub fn remove(dir: &Path, interface: &str) -> Result<bool, EngineError> {
    let path = link_path(dir, interface);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(pin_err(&path, "removing the pinned link failed", Some(e))),
    }
}

/// Whether the link pinned for `interface` still filters the device of
/// that name: a link whose device was deleted (or renamed) filters nothing
/// and only holds its program and maps in memory.
pub fn is_live(dir: &Path, interface: &str) -> Result<bool, EngineError> {
    let (_, program) = open(&link_path(dir, interface))?;
    let Ok(c) = std::ffi::CString::new(interface) else {
        return Ok(false);
    };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Ok(false);
    }
    Ok(matches!(xdp_on(index), Ok(Some((id, _))) if id == program))
}

/// The link pinned at `path` and the id of the program it runs.
pub(crate) fn open(path: &Path) -> Result<(FdLink, u32), EngineError> {
    let fail = |message: &str, e: LinkError| EngineError::Pin {
        path: path.to_owned(),
        message: message.into(),
        source: Some(Box::new(e)),
    };
    let link: FdLink = PinnedLink::from_pin(path)
        .map_err(|e| fail("opening the pinned link failed", e))?
        .into();
    let program = link
        .info()
        .map_err(|e| fail("reading the pinned link failed", e))?
        .program_id();
    Ok((link, program))
}

/// The XDP program attached to the device `ifindex` now (its id) and the
/// mode, as the kernel reports them over rtnetlink (`ip -d link show`).
pub(crate) fn xdp_on(ifindex: u32) -> io::Result<Option<(u32, AttachedMode)>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut msg = LinkMessage::default();
    msg.header.index = ifindex;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetLink(msg));
    req.header.flags = NLM_F_REQUEST;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0; req.header.length as usize];
    req.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let (reply, _) = socket.recv_from_full()?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let link = match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => link,
        NetlinkPayload::Error(e) => return Err(e.to_io()),
        _ => return Err(io::Error::other("unexpected netlink reply")),
    };
    let Some(xdp) = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(x) => Some(x),
        _ => None,
    }) else {
        return Ok(None);
    };
    let mode = xdp.iter().find_map(|x| match x {
        LinkXdp::Attached(XdpAttached::Driver) => Some(AttachedMode::Native),
        LinkXdp::Attached(XdpAttached::SocketBuffer) => Some(AttachedMode::Skb),
        _ => None,
    });
    let id = xdp.iter().find_map(|x| match x {
        LinkXdp::ProgId(id) => Some(*id),
        _ => None,
    });
    Ok(id.zip(mode))
}
