//! The immutable sorted table (LevelDB's format) that TensorFlow writes as a tensor bundle's
//! `.index`: data blocks of prefix-compressed entries with restart points, an index block of
//! block handles, an empty metaindex block and a 48-byte footer. Every block is followed by a
//! type byte (0 raw, 1 snappy) and the masked CRC-32C of its stored bytes and type.
//!
//! Index files are small (one entry per variable), so the whole table is read into a sorted
//! map at once; every length, offset and checksum is checked on the way.

use std::collections::BTreeMap;

use thiserror::Error;

use super::crc32c;

const FOOTER_LEN: usize = 48;
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const TRAILER_LEN: usize = 5;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TableError {
    #[error("the file is {0} bytes, shorter than a table's 48-byte footer")]
    TooShort(usize),
    #[error("the footer's magic number is {0:#018x}, not a table's {MAGIC:#018x}")]
    BadMagic(u64),
    #[error("{what} at byte {offset} runs past the end of the {len}-byte file")]
    OutOfBounds { what: &'static str, offset: usize, len: usize },
    #[error("the block at byte {offset} fails its checksum (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { offset: usize, stored: u32, computed: u32 },
    #[error("the block at byte {offset} has compression type {kind}; only 0 (none) and 1 (snappy) exist")]
    BlockType { offset: usize, kind: u8 },
    #[error("the snappy block at byte {offset} does not decompress: {message}")]
    Snappy { offset: usize, message: String },
    #[error("the block at byte {offset} is malformed: {what}")]
    Malformed { offset: usize, what: String },
    #[error("key {0:?} comes out of order")]
    Unsorted(String),
}

/// A key and its value, as stored.
type Entry = (Vec<u8>, Vec<u8>);

/// Every key and value of the table, sorted by key.
pub(super) fn read(file: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, TableError> {
    if file.len() < FOOTER_LEN {
        return Err(TableError::TooShort(file.len()));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(footer[40..48].try_into().unwrap_or_default());
    if magic != MAGIC {
        return Err(TableError::BadMagic(magic));
    }
    let footer_at = file.len() - FOOTER_LEN;
    let mut cursor = Cursor { bytes: &footer[..40], at: 0, block: footer_at };
    let _metaindex = cursor.handle()?;
    let index = cursor.handle()?;
    let mut table = BTreeMap::new();
    for (_, handle) in entries(&block(file, index)?, index.offset)? {
        let handle = Cursor { bytes: &handle, at: 0, block: index.offset }.handle()?;
        for (key, value) in entries(&block(file, handle)?, handle.offset)? {
            if table.last_key_value().is_some_and(|(last, _): (&Vec<u8>, _)| *last >= key) {
                return Err(TableError::Unsorted(String::from_utf8_lossy(&key).into_owned()));
            }
            table.insert(key, value);
        }
    }
    Ok(table)
}

#[derive(Debug, Clone, Copy)]
struct Handle {
    offset: usize,
    size: usize,
}

/// The block's stored bytes, checked against its trailer and decompressed.
fn block(file: &[u8], handle: Handle) -> Result<Vec<u8>, TableError> {
    let Handle { offset, size } = handle;
    let end = offset.checked_add(size).and_then(|e| e.checked_add(TRAILER_LEN)).filter(|&e| e <= file.len());
    if end.is_none() {
        return Err(TableError::OutOfBounds { what: "a block", offset, len: file.len() });
    }
    let stored = &file[offset..offset + size];
    let kind = file[offset + size];
    let crc = u32::from_le_bytes(file[offset + size + 1..offset + size + 5].try_into().unwrap_or_default());
    let computed = crc32c::mask(crc32c::extend(crc32c::crc32c(stored), &[kind]));
    if crc != computed {
        return Err(TableError::Checksum { offset, stored: crc, computed });
    }
    match kind {
        0 => Ok(stored.to_vec()),
        1 => snap::raw::Decoder::new()
            .decompress_vec(stored)
            .map_err(|e| TableError::Snappy { offset, message: e.to_string() }),
        kind => Err(TableError::BlockType { offset, kind }),
    }
}

/// The entries of a block: `shared`, `non_shared` and `value_len` varints, the key's new
/// suffix and the value, then the restart offsets and their count, which are only needed for
/// seeking and are just checked here.
fn entries(block: &[u8], offset: usize) -> Result<Vec<Entry>, TableError> {
    let malformed = |what: String| TableError::Malformed { offset, what };
    if block.len() < 4 {
        return Err(malformed(format!("{} bytes cannot hold the restart count", block.len())));
    }
    let restarts = u32::from_le_bytes(block[block.len() - 4..].try_into().unwrap_or_default()) as usize;
    let restart_bytes = restarts.checked_mul(4).and_then(|n| n.checked_add(4)).filter(|&n| n <= block.len());
    let Some(restart_bytes) = restart_bytes else {
        return Err(malformed(format!("{restarts} restart points do not fit in {} bytes", block.len())));
    };
    let body = &block[..block.len() - restart_bytes];
    let mut cursor = Cursor { bytes: body, at: 0, block: offset };
    let mut out = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    while cursor.at < body.len() {
        let shared = cursor.varint()? as usize;
        let fresh = cursor.varint()? as usize;
        let value_len = cursor.varint()? as usize;
        if shared > key.len() {
            return Err(malformed(format!("an entry shares {shared} bytes of a {}-byte previous key", key.len())));
        }
        key.truncate(shared);
        key.extend_from_slice(cursor.take(fresh)?);
        let value = cursor.take(value_len)?.to_vec();
        out.push((key.clone(), value));
    }
    Ok(out)
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VarintError {
    Truncated,
    TooLong,
}

/// A little-endian base-128 varint at `bytes[*at..]`, advancing `at` past it.
pub(super) fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64, VarintError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or(VarintError::Truncated)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(VarintError::TooLong)
}

struct Cursor<'b> {
    bytes: &'b [u8],
    at: usize,
    /// Where the bytes are in the file, for messages.
    block: usize,
}

impl<'b> Cursor<'b> {
    fn varint(&mut self) -> Result<u64, TableError> {
        read_varint(self.bytes, &mut self.at).map_err(|e| {
            let what = match e {
                VarintError::Truncated => "a varint runs past the block's end",
                VarintError::TooLong => "a varint is longer than 10 bytes",
            };
            TableError::Malformed { offset: self.block, what: what.into() }
        })
    }

    fn take(&mut self, n: usize) -> Result<&'b [u8], TableError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(TableError::Malformed { offset: self.block, what: format!("an entry of {n} bytes runs past the block's end") });
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn handle(&mut self) -> Result<Handle, TableError> {
        let offset = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
        let size = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
        Ok(Handle { offset, size })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A block of `entries` with a restart point every `interval` entries.
    fn encode_block(entries: &[(Vec<u8>, Vec<u8>)], interval: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut restarts = Vec::new();
        let mut previous: &[u8] = &[];
        for (i, (key, value)) in entries.iter().enumerate() {
            let shared = if i % interval == 0 {
                restarts.push(out.len() as u32);
                0
            } else {
                key.iter().zip(previous).take_while(|(a, b)| a == b).count()
            };
            varint(&mut out, shared as u64);
            varint(&mut out, (key.len() - shared) as u64);
            varint(&mut out, value.len() as u64);
            out.extend_from_slice(&key[shared..]);
            out.extend_from_slice(value);
            previous = key;
        }
        if restarts.is_empty() {
            restarts.push(0);
        }
        for r in &restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        out
    }

    /// A table file holding `entries` (sorted) in blocks of `per_block`, each block snappy-
    /// compressed when `snappy` says so: what TF's writer (and its older, snappy-writing
    /// versions) produce.
    pub(crate) fn encode_table(entries: &[(Vec<u8>, Vec<u8>)], per_block: usize, snappy: bool) -> Vec<u8> {
        let mut file = Vec::new();
        let write_block = |file: &mut Vec<u8>, contents: Vec<u8>, compress: bool| {
            let (kind, stored) = if compress { (1u8, snap::raw::Encoder::new().compress_vec(&contents).expect("snappy")) } else { (0u8, contents) };
            let offset = file.len();
            file.extend_from_slice(&stored);
            file.push(kind);
            let crc = crc32c::mask(crc32c::extend(crc32c::crc32c(&stored), &[kind]));
            file.extend_from_slice(&crc.to_le_bytes());
            (offset, stored.len())
        };
        let mut index = Vec::new();
        for chunk in entries.chunks(per_block.max(1)) {
            let (offset, size) = write_block(&mut file, encode_block(chunk, 16), snappy);
            let mut handle = Vec::new();
            varint(&mut handle, offset as u64);
            varint(&mut handle, size as u64);
            index.push((chunk.last().expect("chunk").0.clone(), handle));
        }
        let metaindex = write_block(&mut file, encode_block(&[], 1), false);
        let index = write_block(&mut file, encode_block(&index, 1), false);
        let mut footer = Vec::new();
        for (offset, size) in [metaindex, index] {
            varint(&mut footer, offset as u64);
            varint(&mut footer, size as u64);
        }
        footer.resize(40, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        file.extend_from_slice(&footer);
        file
    }

    fn sample(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> =
            (0..n).map(|i| (format!("layer_{:03}/kernel/.ATTRIBUTES/VARIABLE_VALUE", i).into_bytes(), vec![i as u8; i % 7])).collect();
        entries.insert(0, (Vec::new(), b"header".to_vec()));
        entries
    }

    #[test]
    fn reads_raw_and_snappy_tables_across_blocks() {
        let entries = sample(40);
        for snappy in [false, true] {
            let file = encode_table(&entries, 9, snappy);
            let table = read(&file).expect("table");
            assert_eq!(table.into_iter().collect::<Vec<_>>(), entries, "snappy {snappy}");
        }
    }

    #[test]
    fn damage_is_reported_not_misread() {
        let file = encode_table(&sample(5), 4, false);
        assert_eq!(read(&file[..20]), Err(TableError::TooShort(20)));
        let mut bad_magic = file.clone();
        let n = bad_magic.len();
        bad_magic[n - 1] ^= 1;
        assert!(matches!(read(&bad_magic), Err(TableError::BadMagic(_))));
        let mut flipped = file.clone();
        flipped[3] ^= 0x40;
        assert!(matches!(read(&flipped), Err(TableError::Checksum { offset: 0, .. })), "{:?}", read(&flipped));
        let mut truncated = file[..file.len() - FOOTER_LEN - 30].to_vec();
        truncated.extend_from_slice(&file[file.len() - FOOTER_LEN..]);
        assert!(read(&truncated).is_err());
    }
}
