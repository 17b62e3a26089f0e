//! The tracking hashes: which bucket of SOURCES, TARGETS, FRAGS and SLOW a
//! key takes, and which admission-sketch cells it counts in. Seeded with
//! a random value the loader sets, so nobody can aim collisions.
//!
//! Keys are native-endian words. Every IPv4 address is keyed mapped into
//! IPv6 (`::ffff:a.b.c.d`), so its first three words are the same for all:
//! the loader computes the hash state after them once per seed
//! ([`v4_state`]) and the program starts from there ([`hash_v4`]), which
//! gives the same value as [`hash_words`] over the whole key with a
//! quarter of the chained multiplies.

/// Multiplier of the hash steps and of the bit-set bins (2^32 / φ).
pub const GOLDEN: u32 = 0x9e37_79b1;
/// Salt of the TARGETS hash (with the seed).
pub const TARGET_SALT: u32 = 0x5bd1_e995;
/// Salt of the FRAGS hash (with the seed).
pub const FRAG_SALT: u32 = 0x27d4_eb2f;

/// The first three words of an IPv4-mapped address (`::ffff:0:0/96`).
pub const V4_MAPPED_PREFIX: [u32; 3] = [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff])];

/// Name of the read-only global holding `[v4_state(seed),
/// v4_state(seed ^ TARGET_SALT)]`; the loader sets it with the seed.
pub const V4_STATES_GLOBAL: &str = "V4_STATES";
/// Index in the `V4_STATES` global of the state for SOURCES, SLOW and the
/// admission sketch (the plain seed).
pub const V4_STATE_SEED: usize = 0;
/// Index in the `V4_STATES` global of the state for TARGETS.
pub const V4_STATE_TARGET: usize = 1;

/// One step of the hash: a multiply-rotate over a key word. Every step
/// mixes the seed in nonlinearly, so which keys share a bucket or a
/// sketch cell depends on the secret seed.
#[inline(always)]
pub const fn step(h: u32, w: u32) -> u32 {
    (h ^ w).wrapping_mul(GOLDEN).rotate_left(15)
}

/// A 32-bit finaliser (murmur3's): spreads every input bit over the hash.
#[inline(always)]
pub const fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The seeded hash of `key`: a [`step`] per word, [`mix`] at the end.
#[inline(always)]
pub fn hash_words<const N: usize>(key: &[u32; N], seed: u32) -> u32 {
    let mut h = seed;
    for w in key {
        h = step(h, *w);
    }
    mix(h)
}

/// The hash state after [`V4_MAPPED_PREFIX`] from `seed`.
pub const fn v4_state(seed: u32) -> u32 {
    let p = V4_MAPPED_PREFIX;
    step(step(step(seed, p[0]), p[1]), p[2])
}

/// [`hash_words`] of a key that starts with an IPv4-mapped address, from
/// the state [`v4_state`] gave for the seed: `rest` is the key from its
/// fourth word on.
#[inline(always)]
pub fn hash_v4<const N: usize>(state: u32, rest: &[u32; N]) -> u32 {
    let mut h = state;
    for w in rest {
        h = step(h, *w);
    }
    mix(h)
}

/// Whether the address words `a` are an IPv4-mapped address.
#[inline(always)]
pub fn is_v4_mapped(a: &[u32; 4]) -> bool {
    a[0] == V4_MAPPED_PREFIX[0] && a[1] == V4_MAPPED_PREFIX[1] && a[2] == V4_MAPPED_PREFIX[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v4_shortcut_hashes_like_the_whole_key() {
        let p = V4_MAPPED_PREFIX;
        for seed in [0, 1, 0x5eed, 0xdead_beef, u32::MAX] {
            for a in [0, 1, 0x0a00_0001, 0x0100_a8c0, u32::MAX] {
                let key = [p[0], p[1], p[2], a];
                assert_eq!(hash_v4(v4_state(seed), &[a]), hash_words(&key, seed));
                let t = seed ^ TARGET_SALT;
                let target = [p[0], p[1], p[2], a, 443];
                assert_eq!(hash_v4(v4_state(t), &[a, 443]), hash_words(&target, t));
            }
        }
    }

    #[test]
    fn the_seed_decides_the_hash() {
        let key = [
            V4_MAPPED_PREFIX[0],
            V4_MAPPED_PREFIX[1],
            V4_MAPPED_PREFIX[2],
            7,
        ];
        assert_ne!(hash_words(&key, 1), hash_words(&key, 2));
        assert!(is_v4_mapped(&[0, 0, V4_MAPPED_PREFIX[2], 9]));
        assert!(!is_v4_mapped(&[0x20010db8, 0, V4_MAPPED_PREFIX[2], 9]));
    }
}
