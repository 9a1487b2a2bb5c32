//! CRC-32C (Castagnoli), and the masking TensorFlow's table and bundle files store it with.
//! Masking exists because a CRC of data that itself embeds CRCs is weak; TF (like LevelDB)
//! stores `mask(crc)` everywhere.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;
const MASK_DELTA: u32 = 0xa282_ead8;

const fn table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = table();

/// Continues a CRC over more bytes (`crc` 0 to start).
pub(super) fn extend(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in bytes {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

pub(super) fn crc32c(bytes: &[u8]) -> u32 {
    extend(0, bytes)
}

pub(super) fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // The standard check value of CRC-32C, and LevelDB's published vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        assert_eq!(extend(crc32c(b"hello "), b"world"), crc32c(b"hello world"));
        assert_ne!(mask(crc32c(b"foo")), crc32c(b"foo"));
    }
}
