//! engine placeholder for the first build
/// The XDP object.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ironpost-ebpf"));
