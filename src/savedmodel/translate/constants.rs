//! Operands computed at load rather than in the graph: constant filters permuted into the
//! engine's layouts, constant reshapes folded, per-channel vectors shaped for NCHW, so the
//! engine's passes see weights where TensorFlow had ops on them.

use crate::proto::tensorflow::NodeDef;
use crate::proto::tensorflow::attr_value::Value as AttrValue;
use crate::tensor::{HostTensor, TensorData};

use super::{Builder, Value};

impl Builder<'_> {
    /// A per-channel vector `[C]` as `[C, 1, 1]`, to broadcast over an NCHW tensor's channels.
    pub(super) fn per_channel(&mut self, node: &str, what: &str, vector: &str) -> String {
        if let Some((dims, data)) = self.consts.get(vector).cloned().map(HostTensor::into_parts).filter(|(d, _)| d.len() == 1) {
            let name = format!("{node}#{what}_chw");
            if let Ok(tensor) = HostTensor::new(vec![dims[0], 1, 1], data) {
                self.initializer(&name, tensor);
                return name;
            }
        }
        let axes = self.int64s(&format!("{node}#{what}_axes"), &[1, 2]);
        self.emit_tensor(&format!("{node}#{what}_chw"), "Unsqueeze", vec![vector.to_string(), axes], Vec::new())
    }

    /// A Reshape or Squeeze of a constant, computed here as the initializer `<name>:0`.
    pub(super) fn fold_shape(&mut self, name: &str, node: &NodeDef, inputs: &[Value]) -> Option<()> {
        let (dims, data) = self.known(inputs.first()?)?.into_parts();
        let count: usize = dims.iter().product();
        let shape: Vec<usize> = if node.op == "Reshape" {
            let wanted = self.known_ints(inputs.get(1)?)?;
            let known: usize = wanted.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
            wanted.iter().map(|&d| if d < 0 { count.checked_div(known) } else { Some(d as usize) }).collect::<Option<_>>()?
        } else {
            let axes = match node.attr.get("squeeze_dims").and_then(|a| a.value.as_ref()) {
                Some(AttrValue::List(l)) => l.i.clone(),
                _ => Vec::new(),
            };
            let rank = dims.len() as i64;
            let squeezed = |a: usize| if axes.is_empty() { dims[a] == 1 } else { axes.iter().any(|&x| (x + rank) % rank == a as i64) };
            (0..dims.len()).filter(|&a| !squeezed(a)).map(|a| dims[a]).collect()
        };
        let tensor = HostTensor::new(shape, data).ok()?;
        self.initializer(&format!("{name}:0"), tensor);
        Some(())
    }

    /// A filter `input` with its axes permuted by `perm` (then reshaped to `shape`): computed
    /// here when the filter is a float constant, else as Transpose and Reshape nodes.
    pub(super) fn filter(&mut self, name: &str, value: &Value, input: &str, perm: &[usize], shape: Option<Vec<usize>>) -> String {
        if let Some((dims, TensorData::F32(data))) = self.known(value).map(HostTensor::into_parts) {
            let permuted = permute(&dims, &data, perm);
            let dims = shape.clone().unwrap_or_else(|| perm.iter().map(|&a| dims[a]).collect());
            if let Ok(tensor) = HostTensor::new(dims, TensorData::F32(permuted)) {
                self.initializer(name, tensor);
                return name.to_string();
            }
        }
        let perm: Vec<i64> = perm.iter().map(|&a| a as i64).collect();
        let permuted = self.transpose(&format!("{name}#permuted"), input, &perm);
        match shape {
            None => permuted,
            Some(shape) => {
                let shape = self.int64s(&format!("{name}#shape"), &shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
                self.emit_tensor(name, "Reshape", vec![permuted, shape], Vec::new())
            }
        }
    }
}

/// `data` (row-major, of shape `dims`) with its axes permuted: output axis `i` is input axis
/// `perm[i]`.
fn permute(dims: &[usize], data: &[f32], perm: &[usize]) -> Vec<f32> {
    let rank = dims.len();
    let mut strides = vec![1usize; rank];
    for a in (0..rank.saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * dims[a + 1];
    }
    let out_dims: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; rank];
    for _ in 0..data.len() {
        out.push(data[index.iter().zip(perm).map(|(&i, &a)| i * strides[a]).sum::<usize>()]);
        for a in (0..rank).rev() {
            index[a] += 1;
            if index[a] < out_dims[a] {
                break;
            }
            index[a] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn permute_moves_axes() {
        // [2, 3] transposed.
        assert_eq!(super::permute(&[2, 3], &[0., 1., 2., 3., 4., 5.], &[1, 0]), [0., 3., 1., 4., 2., 5.]);
        // HWIO [1, 1, 2, 3] to OIHW [3, 2, 1, 1]: element (o, i) is (i, o) of the source.
        let hwio: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(super::permute(&[1, 1, 2, 3], &hwio, &[3, 2, 0, 1]), [0., 3., 1., 4., 2., 5.]);
    }
}
