//! A tensor bundle (`<export>/variables/variables.{index,data-*-of-*}`): the index table maps
//! each checkpoint key to where its bytes sit in which data shard, with their dtype, shape and
//! masked CRC-32C. Everything is checked before a value is handed out, and every failure names
//! the file and the key, so a corrupt or truncated export fails its version's load with a
//! message a user can act on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use thiserror::Error;

use crate::proto::tensorflow::bundle_header_proto::Endianness;
use crate::proto::tensorflow::{BundleEntryProto, BundleHeaderProto, DataType};
use crate::tensor::{DType, HostTensor, element_count, le_bytes, tf_proto};

use super::crc32c;
use super::table::{self, TableError, read_varint};

#[derive(Debug, Error)]
pub enum BundleError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Table {
        file: String,
        #[source]
        source: TableError,
    },
    #[error("{file}: {what}")]
    Header { file: String, what: String },
    #[error("{file}: variable {key:?}: {what}")]
    Entry { file: String, key: String, what: String },
    #[error("{file}: no variable {key:?} in the bundle")]
    Missing { file: String, key: String },
}

/// An opened bundle: its index parsed and its data shards read.
pub struct Bundle {
    index_file: String,
    entries: BTreeMap<String, BundleEntryProto>,
    shards: Vec<(String, Vec<u8>)>,
    big_endian: bool,
}

impl Bundle {
    /// `prefix` is the bundle's path without extension: `<export>/variables/variables`.
    pub fn open(prefix: &Path) -> Result<Self, BundleError> {
        let index_path = with_suffix(prefix, ".index");
        let index_file = index_path.display().to_string();
        let bytes = std::fs::read(&index_path).map_err(|source| BundleError::Io { file: index_file.clone(), source })?;
        let table = table::read(&bytes).map_err(|source| BundleError::Table { file: index_file.clone(), source })?;
        let header_error = |what: String| BundleError::Header { file: index_file.clone(), what };
        let header = table.get(&Vec::new()).ok_or_else(|| header_error("no header entry (the empty key)".into()))?;
        let header = BundleHeaderProto::decode(header.as_slice()).map_err(|e| header_error(format!("the header does not parse: {e}")))?;
        let num_shards = usize::try_from(header.num_shards).ok().filter(|n| (1..=1 << 16).contains(n));
        let num_shards = num_shards.ok_or_else(|| header_error(format!("num_shards is {}", header.num_shards)))?;
        let mut entries = BTreeMap::new();
        for (key, value) in table.into_iter().filter(|(k, _)| !k.is_empty()) {
            let key = String::from_utf8(key).map_err(|e| header_error(format!("a key is not UTF-8: {e}")))?;
            let entry = BundleEntryProto::decode(value.as_slice())
                .map_err(|e| BundleError::Entry { file: index_file.clone(), key: key.clone(), what: format!("the entry does not parse: {e}") })?;
            entries.insert(key, entry);
        }
        let mut shards = Vec::with_capacity(num_shards);
        for shard in 0..num_shards {
            let path = with_suffix(prefix, &format!(".data-{shard:05}-of-{num_shards:05}"));
            let file = path.display().to_string();
            let bytes = std::fs::read(&path).map_err(|source| BundleError::Io { file: file.clone(), source })?;
            shards.push((file, bytes));
        }
        Ok(Self { index_file, entries, shards, big_endian: header.endianness() == Endianness::Big })
    }

    /// Every checkpoint key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn entry(&self, key: &str) -> Result<&BundleEntryProto, BundleError> {
        self.entries.get(key).ok_or_else(|| BundleError::Missing { file: self.index_file.clone(), key: key.to_string() })
    }

    /// The stored bytes of `key`, within its shard (the caller checks the checksum, which
    /// covers the bytes as stored for numbers but not for strings).
    fn bytes(&self, key: &str) -> Result<(&BundleEntryProto, &[u8], &str), BundleError> {
        let entry = self.entry(key)?;
        let bad = |file: &str, what: String| BundleError::Entry { file: file.to_string(), key: key.to_string(), what };
        if !entry.slices.is_empty() {
            return Err(bad(&self.index_file, "is a partitioned variable (slices), which is not supported".into()));
        }
        let (file, data) = usize::try_from(entry.shard_id)
            .ok()
            .and_then(|s| self.shards.get(s))
            .ok_or_else(|| bad(&self.index_file, format!("names shard {} of {}", entry.shard_id, self.shards.len())))?;
        let start = usize::try_from(entry.offset).ok();
        let end = start.zip(usize::try_from(entry.size).ok()).and_then(|(s, n)| s.checked_add(n));
        let (Some(start), Some(end)) = (start, end.filter(|&e| e <= data.len())) else {
            return Err(bad(file, format!("bytes {}..+{} lie outside the {}-byte file", entry.offset, entry.size, data.len())));
        };
        Ok((entry, &data[start..end], file))
    }

    /// A numeric variable as a host tensor.
    pub fn tensor(&self, key: &str) -> Result<HostTensor, BundleError> {
        let (entry, bytes, file) = self.bytes(key)?;
        let bad = |what: String| BundleError::Entry { file: file.to_string(), key: key.to_string(), what };
        check_crc(entry, crc32c::crc32c(bytes)).map_err(bad)?;
        let dtype = tf_proto::dtype_from_tf(entry.dtype).map_err(|e| bad(e.to_string()))?;
        let shape = shape_of(entry).map_err(bad)?;
        let expected = element_count(&shape).and_then(|n| n.checked_mul(dtype.size_in_bytes()));
        if expected != Some(bytes.len()) {
            return Err(bad(format!("holds {} bytes, but {dtype} of shape {shape:?} needs {expected:?}", bytes.len())));
        }
        let data = if self.big_endian { le_bytes::decode(dtype, &swap(bytes, dtype)) } else { le_bytes::decode(dtype, bytes) };
        HostTensor::new(shape, data).map_err(bad)
    }

    /// A DT_STRING variable's elements: the lengths as varints, a masked CRC of the lengths
    /// (each as a u32, or u64 when larger), then the bytes of every element. The entry's CRC
    /// covers the lengths as fixed-width integers (not the varints), the stored length CRC and
    /// the elements.
    pub fn strings(&self, key: &str) -> Result<Vec<Vec<u8>>, BundleError> {
        let (entry, bytes, file) = self.bytes(key)?;
        let bad = |what: String| BundleError::Entry { file: file.to_string(), key: key.to_string(), what };
        if entry.dtype != DataType::DtString as i32 {
            return Err(bad(format!("is dtype {}, not DT_STRING", entry.dtype)));
        }
        let shape = shape_of(entry).map_err(bad)?;
        let count = element_count(&shape).filter(|&n| n <= bytes.len()).ok_or_else(|| bad(format!("shape {shape:?} is larger than its bytes")))?;
        let mut at = 0;
        let mut lengths = Vec::with_capacity(count);
        let mut length_crc = 0;
        for _ in 0..count {
            let length = read_varint(bytes, &mut at).map_err(|_| bad("a string length runs past the entry".into()))?;
            length_crc = match u32::try_from(length) {
                Ok(small) => crc32c::extend(length_crc, &small.to_le_bytes()),
                Err(_) => crc32c::extend(length_crc, &length.to_le_bytes()),
            };
            lengths.push(usize::try_from(length).unwrap_or(usize::MAX));
        }
        let stored = bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()));
        if stored != Some(crc32c::mask(length_crc)) {
            return Err(bad("the string lengths fail their checksum".into()));
        }
        let mut entry_crc = crc32c::extend(length_crc, &bytes[at..at + 4]);
        at += 4;
        let mut out = Vec::with_capacity(count);
        for length in lengths {
            let end = at.checked_add(length).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("a string runs past the entry".into()))?;
            entry_crc = crc32c::extend(entry_crc, &bytes[at..end]);
            out.push(bytes[at..end].to_vec());
            at = end;
        }
        check_crc(entry, entry_crc).map_err(bad)?;
        Ok(out)
    }
}

fn check_crc(entry: &BundleEntryProto, crc: u32) -> Result<(), String> {
    let computed = crc32c::mask(crc);
    if computed == entry.crc32c {
        Ok(())
    } else {
        Err(format!("fails its checksum (stored {:#010x}, computed {computed:#010x})", entry.crc32c))
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut path = prefix.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

fn shape_of(entry: &BundleEntryProto) -> Result<Vec<usize>, String> {
    let shape = entry.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default();
    shape.iter().map(|d| usize::try_from(d.size).map_err(|_| format!("has dimension {}", d.size))).collect()
}

/// Big-endian element bytes to little-endian.
fn swap(bytes: &[u8], dtype: DType) -> Vec<u8> {
    bytes.chunks_exact(dtype.size_in_bytes()).flat_map(|c| c.iter().rev().copied()).collect()
}
