//! Random text from the system's source, for token ids, secrets and node passwords.

use ring::rand::{SecureRandom, SystemRandom};

use crate::PkiError;

/// `count` random bytes.
pub fn bytes(count: usize) -> Result<Vec<u8>, PkiError> {
    let mut out = vec![0u8; count];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| PkiError::Random)?;
    Ok(out)
}

/// `length` characters of `[a-z0-9]`, each equally likely (bytes past the last whole multiple
/// of 36 are drawn again, so no character is favoured).
pub fn lower_alphanumeric(length: usize) -> Result<String, PkiError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const LIMIT: u8 = 252; // 7 * 36: the largest multiple of 36 below 256
    let mut out = String::with_capacity(length);
    while out.len() < length {
        for byte in bytes(length)? {
            if byte < LIMIT && out.len() < length {
                out.push(char::from(ALPHABET[usize::from(byte % 36)]));
            }
        }
    }
    Ok(out)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphanumeric_text_has_the_asked_length_and_alphabet() {
        let text = lower_alphanumeric(40).expect("random");
        assert_eq!(text.len(), 40);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{text}"
        );
        assert_ne!(text, lower_alphanumeric(40).expect("random"));
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff]), "000aff");
    }
}
