//! Minimal `.npy` reader for the one layout a benchmark input needs: little-endian float32 in C
//! order (format versions 1, 2 and 3). Anything else is refused with a message rather than
//! reinterpreted, so a float64 file is not silently sent as garbage.

use std::path::Path;

/// A float32 array: dims (first = batch) and values in C order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NpyF32 {
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

pub(crate) fn read(path: &Path) -> Result<NpyF32, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn parse(bytes: &[u8]) -> Result<NpyF32, String> {
    let rest = bytes.strip_prefix(b"\x93NUMPY").ok_or("not a .npy file (bad magic)")?;
    let (major, rest) = rest.split_at_checked(2).map(|(v, r)| (v[0], r)).ok_or("truncated header")?;
    let (header_len, rest) = match major {
        1 => rest.split_at_checked(2).map(|(n, r)| (u16::from_le_bytes([n[0], n[1]]) as usize, r)),
        2 | 3 => rest.split_at_checked(4).map(|(n, r)| (u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize, r)),
        v => return Err(format!("unsupported .npy version {v}")),
    }
    .ok_or("truncated header")?;
    let (header, data) = rest.split_at_checked(header_len).ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;

    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    if !matches!(descr.trim_matches(|c| c == '\'' || c == '"'), "<f4" | "=f4") {
        return Err(format!("dtype {descr} is not supported (need little-endian float32 '<f4')"));
    }
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    if fortran != "False" {
        return Err("Fortran-order arrays are not supported (save with C order)".into());
    }
    let shape = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let dims = shape
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| format!("bad shape {shape}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if dims.is_empty() {
        return Err("a scalar array has no batch dimension".into());
    }
    let count: usize = dims.iter().product();
    if data.len() != count * 4 {
        return Err(format!("shape {dims:?} needs {} data bytes, file has {}", count * 4, data.len()));
    }
    let values = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok(NpyF32 { dims, values })
}

/// The raw text of `'key': value` in numpy's Python-literal header dict: up to the matching `)`
/// for tuples, else up to the next `,` or `}`.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let after = header[at + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
    let end = if after.starts_with('(') { after.find(')')? + 1 } else { after.find([',', '}'])? };
    Some(after[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(version: u8, header: &str, values: &[f32]) -> Vec<u8> {
        let mut out = b"\x93NUMPY".to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((header.len() as u16).to_le_bytes());
        } else {
            out.extend((header.len() as u32).to_le_bytes());
        }
        out.extend(header.as_bytes());
        values.iter().for_each(|v| out.extend(v.to_le_bytes()));
        out
    }

    #[test]
    fn reads_v1_and_v2() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
        let vals = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        for v in [1, 2] {
            assert_eq!(parse(&npy(v, h, &vals)), Ok(NpyF32 { dims: vec![2, 3], values: vals.to_vec() }));
        }
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";
        assert_eq!(parse(&npy(1, h, &[1.0, 2.0, 3.0])).map(|a| a.dims), Ok(vec![3]));
    }

    #[test]
    fn refuses_other_layouts() {
        let f8 = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n";
        assert!(parse(&npy(1, f8, &[0.0, 0.0])).is_err());
        let fortran = "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }\n";
        assert!(parse(&npy(1, fortran, &[0.0])).is_err());
        let short = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
        assert!(parse(&npy(1, short, &[0.0])).is_err());
        assert!(parse(b"PK\x03\x04").is_err());
    }

    #[test]
    fn reads_the_fixture() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist_cnn/input_b16.npy");
        let a = read(&path).expect("fixture");
        assert_eq!(a.dims, vec![16, 28, 28, 1]);
        assert_eq!(a.values.len(), 16 * 28 * 28);
    }
}
