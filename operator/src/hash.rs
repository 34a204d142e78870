//! One stable, dependency-free hash (64-bit FNV-1a) for what must stay the
//! same across operator versions and processes: names cut to a length limit
//! that must stay unique, and fingerprints stored in the API. Not for
//! security: nothing here resists a chosen collision.

/// The 64-bit FNV-1a hash of `bytes`.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_is_fnv1a() {
        // The published test vectors.
        assert_eq!(super::fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
