//! Row-wise (dim 0) concatenation and splitting, the two operations dynamic batching needs.
//! Kept engine-neutral so batching never touches candle.

use super::{HostTensor, TensorData};

macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::BF16($v) => TensorData::BF16($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::Bool($v) => TensorData::Bool($body),
        }
    };
}

fn append(into: &mut TensorData, from: &TensorData) -> Result<(), String> {
    match (into, from) {
        (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(b),
        (TensorData::F64(a), TensorData::F64(b)) => a.extend_from_slice(b),
        (TensorData::F16(a), TensorData::F16(b)) => a.extend_from_slice(b),
        (TensorData::BF16(a), TensorData::BF16(b)) => a.extend_from_slice(b),
        (TensorData::I8(a), TensorData::I8(b)) => a.extend_from_slice(b),
        (TensorData::I16(a), TensorData::I16(b)) => a.extend_from_slice(b),
        (TensorData::I32(a), TensorData::I32(b)) => a.extend_from_slice(b),
        (TensorData::I64(a), TensorData::I64(b)) => a.extend_from_slice(b),
        (TensorData::U8(a), TensorData::U8(b)) => a.extend_from_slice(b),
        (TensorData::U16(a), TensorData::U16(b)) => a.extend_from_slice(b),
        (TensorData::U32(a), TensorData::U32(b)) => a.extend_from_slice(b),
        (TensorData::U64(a), TensorData::U64(b)) => a.extend_from_slice(b),
        (TensorData::Bool(a), TensorData::Bool(b)) => a.extend_from_slice(b),
        (a, b) => return Err(format!("cannot concatenate {} rows onto {}", b.dtype(), a.dtype())),
    }
    Ok(())
}

impl HostTensor {
    /// Rows along dim 0 (a scalar has none).
    pub fn rows(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }

    /// Whether `other` can be stacked under `self`: same dtype and same non-batch dims.
    pub fn row_compatible(&self, other: &HostTensor) -> bool {
        self.dtype() == other.dtype() && !self.shape().is_empty() && self.shape().get(1..) == other.shape().get(1..)
    }

    /// Stacks tensors along dim 0. Callers check [`HostTensor::row_compatible`] first.
    pub fn concat_rows(parts: &[&HostTensor]) -> Result<HostTensor, String> {
        let first = parts.first().ok_or("nothing to concatenate")?;
        let mut shape = first.shape().to_vec();
        let mut data = first.data().clone();
        for part in &parts[1..] {
            if !first.row_compatible(part) {
                return Err(format!("shapes {} and {} cannot be batched", first.shape_string(), part.shape_string()));
            }
            append(&mut data, part.data())?;
            shape[0] += part.rows();
        }
        HostTensor::new(shape, data)
    }

    /// Splits along dim 0 into consecutive pieces of `sizes` rows (which must add up to at most
    /// the row count; trailing rows, e.g. padding, are dropped).
    pub fn split_rows(&self, sizes: &[usize]) -> Result<Vec<HostTensor>, String> {
        let rows = self.rows();
        if sizes.iter().sum::<usize>() > rows {
            return Err(format!("cannot split {rows} rows into {sizes:?}"));
        }
        let per_row: usize = self.shape()[1..].iter().product();
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for &n in sizes {
            let range = start * per_row..(start + n) * per_row;
            let data = each_variant!(self.data(), v => v[range.clone()].to_vec());
            let mut shape = self.shape().to_vec();
            shape[0] = n;
            out.push(HostTensor::new(shape, data)?);
            start += n;
        }
        Ok(out)
    }

    /// Appends copies of the last row until the tensor has `rows` rows (batch padding up to an
    /// allowed batch size; the padded outputs are dropped by [`HostTensor::split_rows`]).
    pub fn pad_rows(&self, rows: usize) -> Result<HostTensor, String> {
        let have = self.rows();
        if rows <= have || have == 0 {
            return Ok(self.clone());
        }
        let last = self.split_rows(&[have - 1, 1])?.pop().ok_or("no last row")?;
        let extra: Vec<&HostTensor> = std::iter::repeat_n(&last, rows - have).collect();
        let mut parts = vec![self];
        parts.extend(extra);
        HostTensor::concat_rows(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>, v: Vec<f32>) -> HostTensor {
        HostTensor::new(shape, TensorData::F32(v)).expect("tensor")
    }

    #[test]
    fn concat_split_and_pad_round_trip() {
        let a = t(vec![1, 2], vec![1.0, 2.0]);
        let b = t(vec![2, 2], vec![3.0, 4.0, 5.0, 6.0]);
        let c = HostTensor::concat_rows(&[&a, &b]).expect("concat");
        assert_eq!(c.shape(), &[3, 2]);
        let padded = c.pad_rows(4).expect("pad");
        assert_eq!(padded.data(), &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 5.0, 6.0]));
        let parts = padded.split_rows(&[1, 2]).expect("split");
        assert_eq!(parts, vec![a, b]);
    }

    #[test]
    fn incompatible_rows_are_refused() {
        let a = t(vec![1, 2], vec![1.0, 2.0]);
        let b = t(vec![1, 3], vec![1.0, 2.0, 3.0]);
        assert!(!a.row_compatible(&b));
        assert!(HostTensor::concat_rows(&[&a, &b]).is_err());
        let i = HostTensor::new(vec![1, 2], TensorData::I32(vec![1, 2])).expect("tensor");
        assert!(!a.row_compatible(&i));
    }
}
