//! TensorFlow's StridedSlice, with all five masks, as ONNX Slice, Squeeze and Unsqueeze.

use super::{Builder, Value};

impl Builder<'_> {
    /// TF's StridedSlice with constant bounds: ONNX's Slice, a Squeeze of the axes
    /// `shrink_axis_mask` drops, and an Unsqueeze of those `new_axis_mask` adds. Masks: begin,
    /// end, ellipsis, new axis, shrink.
    ///
    /// The input's rank need not be known: the spec entries before the ellipsis (or all of
    /// them, when there is none) address axes from the front, those after it from the back,
    /// with ONNX's negative axes.
    pub(super) fn strided_slice(&mut self, name: &str, inputs: &[Value], ins: &[String], masks: [i64; 5]) -> Result<Vec<Value>, String> {
        let [begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_mask] = masks;
        let bound = |b: &mut Self, i: usize, what: &str| b.known_ints(&inputs[i]).ok_or_else(|| format!("the {what} are not constant"));
        let (begin, end, strides) = (bound(self, 1, "begins")?, bound(self, 2, "ends")?, bound(self, 3, "strides")?);
        let entries = begin.len();
        let bit = |mask: i64, i: usize| mask >> i & 1 == 1;
        if (0..entries).filter(|&i| bit(ellipsis_mask, i)).count() > 1 {
            return Err("more than one ellipsis".into());
        }
        let ellipsis = (0..entries).find(|&i| bit(ellipsis_mask, i));
        let (mut starts, mut ends, mut steps, mut axes, mut squeeze, mut unsqueeze) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut slice = |i: usize, axis: i64, squeeze_it: bool| -> Result<(), String> {
            let stride = strides.get(i).copied().unwrap_or(1);
            if stride == 0 {
                return Err("a stride is 0".into());
            }
            axes.push(axis);
            if squeeze_it {
                starts.push(begin[i]);
                ends.push(if begin[i] == -1 { i64::MAX } else { begin[i] + 1 });
                steps.push(1);
                squeeze.push(axis);
                return Ok(());
            }
            starts.push(match (bit(begin_mask, i), stride > 0) {
                (false, _) => begin[i],
                (true, true) => 0,
                (true, false) => i64::MAX,
            });
            ends.push(match (bit(end_mask, i), stride > 0) {
                (false, _) => end.get(i).copied().unwrap_or(i64::MAX),
                (true, true) => i64::MAX,
                (true, false) => i64::MIN,
            });
            steps.push(stride);
            Ok(())
        };
        // Front entries: input and output axes counted from 0.
        let (mut input_axis, mut output_axis) = (0i64, 0i64);
        for i in 0..ellipsis.unwrap_or(entries) {
            if bit(new_axis_mask, i) {
                unsqueeze.push(output_axis);
                output_axis += 1;
                continue;
            }
            let shrink = bit(shrink_mask, i);
            slice(i, input_axis, shrink)?;
            input_axis += 1;
            output_axis += i64::from(!shrink);
        }
        // Back entries: counted from the end, -1 first.
        let (mut input_axis, mut output_axis) = (-1i64, -1i64);
        for i in (ellipsis.map_or(entries, |e| e + 1)..entries).rev() {
            if bit(new_axis_mask, i) {
                unsqueeze.push(output_axis);
                output_axis -= 1;
                continue;
            }
            let shrink = bit(shrink_mask, i);
            slice(i, input_axis, shrink)?;
            input_axis -= 1;
            output_axis -= i64::from(!shrink);
        }
        let mut result = ins[0].clone();
        if !axes.is_empty() {
            let operands = vec![
                result,
                self.int64s(&format!("{name}#starts"), &starts),
                self.int64s(&format!("{name}#ends"), &ends),
                self.int64s(&format!("{name}#axes"), &axes),
                self.int64s(&format!("{name}#steps"), &steps),
            ];
            result = self.emit_tensor(&format!("{name}#slice"), "Slice", operands, Vec::new());
        }
        if !squeeze.is_empty() {
            let axes = self.int64s(&format!("{name}#squeeze_axes"), &squeeze);
            result = self.emit_tensor(&format!("{name}#squeeze"), "Squeeze", vec![result, axes], Vec::new());
        }
        if !unsqueeze.is_empty() {
            let axes = self.int64s(&format!("{name}#unsqueeze_axes"), &unsqueeze);
            result = self.emit_tensor(&format!("{name}#unsqueeze"), "Unsqueeze", vec![result, axes], Vec::new());
        }
        Ok(vec![Value::Tensor(self.emit_tensor(name, "Identity", vec![result], Vec::new()))])
    }
}
