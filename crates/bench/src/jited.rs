//! A loaded program's JIT-compiled image and where each source line starts
//! in it, for reading perf's sample offsets (`bpf_prog_<tag>_<name>+0x..`)
//! against the source. bpftool prints the same only when it was built with
//! libbfd, which Debian's is not.

use std::{fmt::Write as _, io, os::fd::FromRawFd as _, os::fd::OwnedFd, path::Path};

use anyhow::{Context as _, Result};

use crate::run;

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// Offsets in `struct bpf_prog_info` (include/uapi/linux/bpf.h).
const JITED_PROG_LEN: usize = 16;
const JITED_PROG_INSNS: usize = 24;
const NR_LINE_INFO: usize = 148;
const LINE_INFO: usize = 152;
const JITED_LINE_INFO: usize = 160;
const NR_JITED_LINE_INFO: usize = 168;
const LINE_INFO_REC_SIZE: usize = 172;
const JITED_LINE_INFO_REC_SIZE: usize = 176;
const INFO_LEN: usize = 256;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, zero-padded `union bpf_attr` of its size
    // for `cmd`; every pointer in it points at a live buffer of the length
    // given beside it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn info(fd: &OwnedFd, buf: &mut [u8; INFO_LEN]) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(INFO_LEN as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(buf.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// Writes `<stem>.jit` (the raw image: `objdump -b binary -m i386:x86-64
/// -D`), `<stem>.lines` (per line record: JIT offset in hex, xlated
/// instruction, source line) and `<stem>.xlated` (`bpftool prog dump
/// xlated ... linum`) of program `id` into `dir`.
pub fn dump(id: u32, dir: &Path, stem: &str) -> Result<()> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&id.to_ne_bytes());
    let fd =
        bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).with_context(|| format!("opening program {id}"))?;
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut first = [0u8; INFO_LEN];
    info(&fd, &mut first).with_context(|| format!("reading program {id}'s info"))?;
    let jited_len = u32_at(&first, JITED_PROG_LEN) as usize;
    let (nr_lines, nr_jited) = (
        u32_at(&first, NR_LINE_INFO) as usize,
        u32_at(&first, NR_JITED_LINE_INFO) as usize,
    );
    let (line_rec, jited_rec) = (
        u32_at(&first, LINE_INFO_REC_SIZE) as usize,
        u32_at(&first, JITED_LINE_INFO_REC_SIZE) as usize,
    );
    let mut image = vec![0u8; jited_len];
    let mut lines = vec![0u8; nr_lines * line_rec];
    let mut jited = vec![0u8; nr_jited * jited_rec];
    let mut second = [0u8; INFO_LEN];
    let mut put = |at: usize, bytes: &[u8]| second[at..at + bytes.len()].copy_from_slice(bytes);
    put(JITED_PROG_LEN, &(jited_len as u32).to_ne_bytes());
    put(JITED_PROG_INSNS, &(image.as_mut_ptr() as u64).to_ne_bytes());
    put(NR_LINE_INFO, &(nr_lines as u32).to_ne_bytes());
    put(LINE_INFO, &(lines.as_mut_ptr() as u64).to_ne_bytes());
    put(JITED_LINE_INFO, &(jited.as_mut_ptr() as u64).to_ne_bytes());
    put(NR_JITED_LINE_INFO, &(nr_jited as u32).to_ne_bytes());
    put(LINE_INFO_REC_SIZE, &(line_rec as u32).to_ne_bytes());
    put(JITED_LINE_INFO_REC_SIZE, &(jited_rec as u32).to_ne_bytes());
    info(&fd, &mut second).with_context(|| format!("reading program {id}'s JIT image"))?;
    let addr = |i: usize| u64::from_ne_bytes(jited[i * jited_rec..][..8].try_into().expect("8"));
    let mut text = String::new();
    for i in 0..nr_lines.min(nr_jited) {
        let rec = &lines[i * line_rec..];
        // struct bpf_line_info: insn_off, file_name_off, line_off, line_col.
        let (insn, line) = (u32_at(rec, 0), u32_at(rec, 12) >> 10);
        let _ = writeln!(text, "{:x} {insn} {line}", addr(i) - addr(0));
    }
    let path = |ext: &str| dir.join(format!("{stem}.{ext}"));
    std::fs::write(path("jit"), &image)?;
    std::fs::write(path("lines"), text)?;
    let xlated = run(
        "bpftool",
        &["prog", "dump", "xlated", "id", &id.to_string(), "linum"],
    )?;
    std::fs::write(path("xlated"), xlated)?;
    Ok(())
}
