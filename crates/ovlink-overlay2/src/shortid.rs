//! The short ids of `l/`: 26 characters of uppercase base32 (RFC 4648 alphabet) from 128
//! random bits, as Docker's `generateID(26)` makes them. Short names keep the mount option
//! string of a deep chain below one page.
//!
//! This module only makes and checks names; it never touches the filesystem.

/// Length of a short id.
pub const LEN: usize = 26;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random short id. The bits come from `fastrand`, seeded by std without ever waiting
/// for the kernel's entropy pool: a short id only has to differ from the others in `l/`
/// (a clash is refused when its link is made), not to be unpredictable.
pub fn generate() -> String {
    encode(&fastrand::u128(..).to_le_bytes())
}

/// Base32 (no padding) of `bytes`, truncated to [`LEN`] characters.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(LEN);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out.truncate(LEN);
    out
}

/// True when `s` looks like a short id: non-empty, at most 64 bytes, only `A-Z`, `a-z`,
/// `0-9` (Docker's own are `LEN` uppercase characters; anything that cannot break a mount
/// option string or a path is accepted when reading).
pub fn is_valid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        for _ in 0..100 {
            let id = generate();
            assert_eq!(id.len(), LEN);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
            assert!(is_valid(&id));
        }
        assert_eq!(encode(&[0u8; 16]), "A".repeat(26));
        assert!(!is_valid("a/b"));
        assert!(!is_valid(""));
        assert!(!is_valid("A:B"));
    }
}
