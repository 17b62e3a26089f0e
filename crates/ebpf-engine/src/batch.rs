//! Many map writes in one system call (`BPF_MAP_UPDATE_BATCH`, Linux 5.6
//! for hash maps, 5.7 for LPM tries). A million-entry import is a million
//! writes: one call each spends more on entering the kernel, finding the
//! map and checking the call than on the write itself.

use std::{
    io, mem,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{Pod, maps::MapData};
use aya_obj::generated::{bpf_attr, bpf_cmd};

/// Writes `values[i]` at `keys[i]` for every `i`, in one call. The key and
/// value types must be the map's (their sizes are its key and value
/// sizes). On failure, also says how many of the first pairs were
/// written.
pub(crate) fn update<K: Pod, V: Pod>(
    map: &MapData,
    keys: &[K],
    values: &[V],
) -> Result<(), (usize, io::Error)> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    if keys.is_empty() {
        return Ok(());
    }
    let count =
        u32::try_from(keys.len()).map_err(|_| (0, io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: bpf_attr is a plain C union of integers; all zeroes is a valid
    // value and what the kernel expects in the fields a command does not use.
    let mut attr: bpf_attr = unsafe { mem::zeroed() };
    attr.batch.map_fd = map.fd().as_fd().as_raw_fd() as u32;
    attr.batch.keys = keys.as_ptr() as u64;
    attr.batch.values = values.as_ptr() as u64;
    attr.batch.count = count;
    // SAFETY: the attribute names a live map fd and two arrays of `count`
    // elements of the map's key and value sizes that outlive the call; the
    // kernel reads them and writes back only `batch.count` in `attr`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_MAP_UPDATE_BATCH as libc::c_long,
            &mut attr as *mut bpf_attr,
            mem::size_of::<bpf_attr>() as libc::c_long,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // SAFETY: reading back the count the kernel wrote into the union.
    let done = unsafe { attr.batch.count } as usize;
    Err((done.min(keys.len()), err))
}
