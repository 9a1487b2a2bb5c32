//! TFRecord reading (the warm-up file format): `u64 length`, `u32 masked crc32c(length)`,
//! `data`, `u32 masked crc32c(data)`, all little-endian. Corrupt records are errors, not skipped.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record {0}: truncated")]
    Truncated(usize),
    #[error("record {0}: {1} checksum mismatch")]
    Checksum(usize, &'static str),
}

const CASTAGNOLI: u32 = 0x82F6_3B78;

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ CASTAGNOLI } else { crc >> 1 };
        }
    }
    !crc
}

fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a TFRecord file into its records, checking both checksums of each.
pub(crate) fn records(bytes: &[u8]) -> Result<Vec<&[u8]>, RecordError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let index = out.len();
        let header = bytes.get(at..at + 8).ok_or(RecordError::Truncated(index))?;
        let length = u64::from_le_bytes(header.try_into().map_err(|_| RecordError::Truncated(index))?);
        if read_u32(bytes, at + 8).ok_or(RecordError::Truncated(index))? != masked_crc(header) {
            return Err(RecordError::Checksum(index, "length"));
        }
        let start = at + 12;
        let end = usize::try_from(length).ok().and_then(|l| start.checked_add(l)).ok_or(RecordError::Truncated(index))?;
        let data = bytes.get(start..end).ok_or(RecordError::Truncated(index))?;
        if read_u32(bytes, end).ok_or(RecordError::Truncated(index))? != masked_crc(data) {
            return Err(RecordError::Checksum(index, "data"));
        }
        out.push(data);
        at = end + 4;
    }
    Ok(out)
}

/// Encodes records in the same format (used by tests and tools that write warm-up files).
pub fn write_records<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for data in records {
        let header = (data.len() as u64).to_le_bytes();
        out.extend_from_slice(&header);
        out.extend_from_slice(&masked_crc(&header).to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&masked_crc(data).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn records_roundtrip_and_corruption_is_detected() {
        let file = write_records([b"hello".as_slice(), b"".as_slice(), b"world!".as_slice()]);
        assert_eq!(records(&file).expect("read"), vec![b"hello".as_slice(), b"", b"world!"]);
        let mut bad = file.clone();
        bad[13] ^= 1;
        assert_eq!(records(&bad), Err(RecordError::Checksum(0, "data")));
        assert_eq!(records(&file[..file.len() - 1]), Err(RecordError::Truncated(2)));
    }
}
