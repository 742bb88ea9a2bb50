//! The bytes of message `seq` on connection `conn`: a cheap deterministic
//! pattern, so every echoed byte can be checked without storing what was
//! sent (no per-message allocation).

/// Byte `i` of message `seq` on connection `conn`.
#[inline]
pub fn byte(conn: u32, seq: u64, i: usize) -> u8 {
    let x = (seq as u32)
        .wrapping_mul(0x9e37_79b1)
        .wrapping_add(conn.wrapping_mul(0x85eb_ca6b))
        .wrapping_add((i as u32).wrapping_mul(0xc2b2_ae35));
    (x >> 24) as u8 ^ (x >> 8) as u8
}

/// Appends message `seq` of `size` bytes to `out`.
pub fn append(out: &mut Vec<u8>, conn: u32, seq: u64, size: usize) {
    out.extend((0..size).map(|i| byte(conn, seq, i)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_differ_by_connection_sequence_and_offset() {
        let mut a = Vec::new();
        append(&mut a, 1, 1, 64);
        let mut b = Vec::new();
        append(&mut b, 1, 2, 64);
        let mut c = Vec::new();
        append(&mut c, 2, 1, 64);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}
