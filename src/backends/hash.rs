//! The hashes behind ip_hash, weighted pool splits and backend identity: FNV-1a over
//! bytes and MurmurHash3's 64-bit finalizer; and the keyed hash (HMAC-SHA256) that
//! makes sticky-cookie values. All are fixed functions of their input (and key), so
//! every wsgate instance (and every restart) maps a client to the same backend.

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

/// An opaque token for `parts` under `key`: the first 8 bytes of HMAC-SHA256 over
/// the parts (each followed by a 0 byte), in hex. Without the key, the parts cannot be
/// recovered or a token forged.
pub fn keyed_token(key: &[u8], parts: &[&str]) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    let tag = ctx.sign();
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

    #[test]
    fn keyed_tokens_depend_on_key_and_parts() {
        let t = keyed_token(b"0123456789abcdef", &["pool", "10.0.0.1:80"]);
        assert_eq!(t.len(), 16);
        assert_eq!(
            t,
            keyed_token(b"0123456789abcdef", &["pool", "10.0.0.1:80"])
        );
        assert_ne!(
            t,
            keyed_token(b"0123456789abcdeX", &["pool", "10.0.0.1:80"])
        );
        assert_ne!(
            t,
            keyed_token(b"0123456789abcdef", &["pool", "10.0.0.1:81"])
        );
        assert_ne!(
            t,
            keyed_token(b"0123456789abcdef", &["poo", "l10.0.0.1:80"])
        );
        assert!(!t.contains("10.0.0.1"));
    }
}
