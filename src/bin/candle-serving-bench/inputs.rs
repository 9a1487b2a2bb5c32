//! Request payloads, built once before the run so that the load loop only clones them: random
//! tensors shaped by the signature, or rows of a `.npy` file. Protocol-neutral; `grpc` and
//! `rest` encode them.

use candle_serving::proto::tensorflow::DataType;

use crate::npy::NpyF32;

/// One signature input as the server describes it. `dims: None` = unknown rank; `-1` = dynamic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InputSpec {
    pub name: String,
    pub dtype: DataType,
    pub dims: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NamedTensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub values: Values,
}

/// The inputs of one request; `batch` (the first dimension) is what items/s counts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Payload {
    pub tensors: Vec<NamedTensor>,
    pub batch: usize,
}

/// Distinct payloads cycled through, so that a run is not one request repeated when the file
/// holds more rows; small, because each is held in memory in encoded form.
const MAX_DISTINCT: usize = 16;

/// Random inputs for `specs`: the first dimension is `batch` when dynamic, other dynamic
/// dimensions are `dynamic_dim`. Floats are uniform in [0, 1), integers in [0, 10) (valid token
/// ids or indices for most models).
pub(crate) fn random(specs: &[InputSpec], batch: usize, dynamic_dim: usize) -> Result<Payload, String> {
    let mut rng = SplitMix(0x5eed_cafe_f00d_0001);
    let mut tensors = Vec::with_capacity(specs.len());
    let mut batch_seen = None;
    for spec in specs {
        let sig = spec.dims.as_ref().ok_or_else(|| format!("input '{}' has unknown rank; use --input-npy", spec.name))?;
        let dims: Vec<usize> = sig
            .iter()
            .enumerate()
            .map(|(i, &d)| match (i, d) {
                (0, d) if d < 0 => batch,
                (_, d) if d < 0 => dynamic_dim,
                (_, d) => d as usize,
            })
            .collect();
        batch_seen.get_or_insert(dims.first().copied().unwrap_or(1));
        let n: usize = dims.iter().product();
        let values = match spec.dtype {
            DataType::DtFloat => Values::F32((0..n).map(|_| rng.unit() as f32).collect()),
            DataType::DtDouble => Values::F64((0..n).map(|_| rng.unit()).collect()),
            DataType::DtInt32 => Values::I32((0..n).map(|_| (rng.next() % 10) as i32).collect()),
            DataType::DtInt64 => Values::I64((0..n).map(|_| (rng.next() % 10) as i64).collect()),
            other => return Err(format!("input '{}': random {} inputs are not supported; use --input-npy", spec.name, other.as_str_name())),
        };
        tensors.push(NamedTensor { name: spec.name.clone(), dims, values });
    }
    if tensors.is_empty() {
        return Err("the signature has no inputs".into());
    }
    Ok(Payload { tensors, batch: batch_seen.unwrap_or(1) })
}

/// Payloads of `batch` rows each from `npy` (all rows when `None`), the k-th starting at row
/// `k * batch` and wrapping around the file.
pub(crate) fn from_npy(npy: &NpyF32, name: &str, batch: Option<usize>) -> Vec<Payload> {
    let rows = npy.dims[0].max(1);
    let row_len: usize = npy.dims[1..].iter().product();
    let batch = batch.unwrap_or(rows);
    let distinct = (rows / gcd(rows, batch)).min(MAX_DISTINCT);
    (0..distinct)
        .map(|k| {
            let mut values = Vec::with_capacity(batch * row_len);
            for j in 0..batch {
                let r = (k * batch + j) % rows;
                values.extend_from_slice(npy.values.get(r * row_len..(r + 1) * row_len).unwrap_or(&[]));
            }
            let mut dims = npy.dims.clone();
            dims[0] = batch;
            Payload { tensors: vec![NamedTensor { name: name.to_string(), dims, values: Values::F32(values) }], batch }
        })
        .collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// SplitMix64: a deterministic generator good enough for benchmark inputs, and no extra crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_fills_dynamic_dims() {
        let specs = [
            InputSpec { name: "x".into(), dtype: DataType::DtFloat, dims: Some(vec![-1, 28, 28, 1]) },
            InputSpec { name: "len".into(), dtype: DataType::DtInt64, dims: Some(vec![-1, -1]) },
        ];
        let p = random(&specs, 4, 7).expect("payload");
        assert_eq!(p.batch, 4);
        assert_eq!(p.tensors[0].dims, vec![4, 28, 28, 1]);
        assert_eq!(p.tensors[1].dims, vec![4, 7]);
        let Values::F32(v) = &p.tensors[0].values else { panic!("f32") };
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(random(&[InputSpec { name: "s".into(), dtype: DataType::DtString, dims: Some(vec![1]) }], 1, 1).is_err());
    }

    #[test]
    fn npy_rows_cycle() {
        let npy = NpyF32 { dims: vec![3, 2], values: vec![0., 0., 1., 1., 2., 2.] };
        let p = from_npy(&npy, "x", Some(2));
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].tensors[0].values, Values::F32(vec![2., 2., 0., 0.]));
        assert_eq!(p[1].tensors[0].dims, vec![2, 2]);
        let all = from_npy(&npy, "x", None);
        assert_eq!((all.len(), all[0].batch), (1, 3));
    }
}
