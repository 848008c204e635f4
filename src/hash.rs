//! The hashes behind ip_hash and backend identity: FNV-1a over bytes and
//! MurmurHash3's 64-bit finalizer. Both are fixed functions of their input, so every
//! wsgate instance (and every restart) hashes a client to the same backend.

/// FNV-1a, 64-bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// MurmurHash3's 64-bit finalizer: a stable, well-mixing bijection.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_values() {
        // Published FNV-1a test vectors: the hash must never change between builds.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fmix64(0), 0);
        assert_ne!(fmix64(1), fmix64(2));
    }
}
