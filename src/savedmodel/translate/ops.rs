//! TensorFlow ops as ONNX nodes (opset 13), with TF's defaults for the attributes that
//! `stripped_default_attrs` removes. Operands that ONNX takes as attributes, or that shape
//! the translation (axes, permutations, slice bounds, filter shapes), must be known at load
//! time: Consts or variables, as Keras exports have them.
//!
//! The helper tensors a translation adds are named `<node>#<what>`: `#` cannot occur in a TF
//! node name, so they never collide with a node of the graph (`conv/Reshape/shape` is one).

use crate::proto::onnx::tensor_proto::DataType as OnnxType;
use crate::proto::tensorflow::NodeDef;
use crate::proto::tensorflow::attr_value::Value as AttrValue;
use crate::tensor::{HostTensor, TensorData, tf_proto};

use super::onnx::{self, float, int, ints, string};
use super::{Builder, Scope, SavedModelError, Value};

/// The flat output index of `node:output_arg:k` in a function body. Every translated op has
/// one output list except the batch norms, whose outputs are one tensor each.
pub(super) fn output_index(op: &str, output_arg: &str, k: usize) -> usize {
    const BATCH_NORM: [&str; 6] = ["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2", "reserve_space_3"];
    match op {
        "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" => BATCH_NORM.iter().position(|a| *a == output_arg).unwrap_or(0) + k,
        _ => k,
    }
}

/// The ONNX domain of ops the translation does not cover (see [`Builder::translate`]).
pub(crate) const UNTRANSLATED_DOMAIN: &str = "tensorflow";
/// Outputs given to an untranslated op: more than any op of the Keras layer set has.
const UNTRANSLATED_OUTPUTS: usize = 8;

/// ONNX ops that take their TF twin's operands as they are.
fn elementwise(op: &str) -> Option<&'static str> {
    Some(match op {
        "AddV2" | "Add" => "Add",
        "Sub" => "Sub",
        "Mul" => "Mul",
        "RealDiv" => "Div",
        "Maximum" => "Max",
        "Minimum" => "Min",
        "Pow" => "Pow",
        "AddN" => "Sum",
        "Relu" => "Relu",
        "Sigmoid" => "Sigmoid",
        "Tanh" => "Tanh",
        "Exp" => "Exp",
        "Log" => "Log",
        "Sqrt" => "Sqrt",
        "Neg" => "Neg",
        "Abs" => "Abs",
        "Floor" => "Floor",
        "Ceil" => "Ceil",
        "Erf" => "Erf",
        "Softplus" => "Softplus",
        "Softsign" => "Softsign",
        "Elu" => "Elu",
        "Selu" => "Selu",
        "Reciprocal" | "Inv" => "Reciprocal",
        "Sin" => "Sin",
        "Cos" => "Cos",
        "Less" => "Less",
        "LessEqual" => "LessOrEqual",
        "Greater" => "Greater",
        "GreaterEqual" => "GreaterOrEqual",
        "Equal" => "Equal",
        "LogicalAnd" => "And",
        "LogicalOr" => "Or",
        "LogicalNot" => "Not",
        "Select" | "SelectV2" => "Where",
        _ => return None,
    })
}

/// Reductions: TF op to ONNX op.
fn reduction(op: &str) -> Option<&'static str> {
    Some(match op {
        "Mean" => "ReduceMean",
        "Sum" => "ReduceSum",
        "Max" => "ReduceMax",
        "Min" => "ReduceMin",
        "Prod" => "ReduceProd",
        _ => return None,
    })
}

impl<'m> Builder<'m> {
    /// One node of `scope`, its inputs already translated: its outputs.
    pub(super) fn translate(&mut self, scope: &Scope<'m>, node: &NodeDef, inputs: Vec<Value>) -> Result<Vec<Value>, SavedModelError> {
        let name = if scope.prefix.is_empty() { node.name.clone() } else { format!("{}/{}", scope.prefix, node.name) };
        let unsupported = |what: String| SavedModelError::Unsupported(format!("{}, node {:?} ({}): {what}", scope.label, node.name, node.op));
        let attr = |key: &str| node.attr.get(key).and_then(|a| a.value.as_ref());
        let flag = |key: &str| matches!(attr(key), Some(AttrValue::B(true)));
        let int_attr = |key: &str, default: i64| match attr(key) {
            Some(AttrValue::I(i)) => *i,
            _ => default,
        };
        let float_attr = |key: &str, default: f32| match attr(key) {
            Some(AttrValue::F(f)) => *f,
            _ => default,
        };
        let list = |key: &str| match attr(key) {
            Some(AttrValue::List(l)) => l.i.clone(),
            _ => Vec::new(),
        };
        let nchw = matches!(attr("data_format"), Some(AttrValue::S(f)) if f.starts_with(b"NC"));
        match node.op.as_str() {
            "NoOp" => return Ok(Vec::new()),
            "Identity" | "ReadVariableOp" | "StopGradient" | "PreventGradient" | "Snapshot" | "EnsureShape" | "CheckNumerics" => {
                return Ok(inputs.into_iter().take(1).collect());
            }
            "PlaceholderWithDefault" => return Ok(inputs.into_iter().take(1).collect()),
            "IdentityN" => return Ok(inputs),
            "Placeholder" => return Err(unsupported("is read by the signature's outputs but is not one of its inputs".into())),
            "VarHandleOp" | "VariableV2" | "Variable" if !scope.function => {
                let key = self.variables.get(&node.name).ok_or_else(|| {
                    unsupported("no checkpoint key is bound to this variable (neither the object graph nor the restore op names it)".into())
                })?;
                return Ok(vec![Value::Variable(key.clone())]);
            }
            "StatefulPartitionedCall" | "PartitionedCall" => {
                let Some(AttrValue::Func(f)) = attr("f") else { return Err(unsupported("has no function".into())) };
                return self.inline(&f.name.clone(), &name, inputs);
            }
            "Const" => {
                let Some(AttrValue::Tensor(value)) = attr("value") else { return Err(unsupported("has no value".into())) };
                let header = tf_proto::header(value, usize::MAX).map_err(|e| unsupported(e.to_string()))?;
                let tensor = tf_proto::decode(value, header).map_err(|e| unsupported(e.to_string()))?;
                let output = format!("{name}:0");
                self.initializer(&output, tensor);
                return Ok(vec![Value::Tensor(output)]);
            }
            _ => {}
        }
        if matches!(node.op.as_str(), "While" | "StatelessWhile") {
            return self.while_loop(&name, node, inputs).map_err(unsupported);
        }
        if let Some(result) = self.list_op(&name, node, &inputs) {
            return result.map_err(unsupported);
        }
        let ins = inputs.iter().map(|v| self.tensor(v)).collect::<Result<Vec<_>, _>>()?;
        let op = node.op.as_str();
        if let Some(onnx_op) = elementwise(op) {
            return self.emit(&name, onnx_op, ins, Vec::new());
        }
        if let Some(onnx_op) = reduction(op) {
            let axes = self.known_ints(&inputs[1]).ok_or_else(|| unsupported("the reduction axes are not constant".into()))?;
            if axes.is_empty() {
                // TF reduces nothing over an empty axis list; ONNX would reduce everything.
                return Ok(vec![inputs[0].clone()]);
            }
            let keep = int("keepdims", i64::from(flag("keep_dims")));
            return if onnx_op == "ReduceSum" {
                let axes = self.int64s(&format!("{name}#axes"), &axes);
                self.emit(&name, onnx_op, vec![ins[0].clone(), axes], vec![keep])
            } else {
                self.emit(&name, onnx_op, vec![ins[0].clone()], vec![keep, ints("axes", &axes)])
            };
        }
        match op {
            "BiasAdd" if nchw => {
                let bias = self.per_channel(&name, "bias", &ins[1]);
                self.emit(&name, "Add", vec![ins[0].clone(), bias], Vec::new())
            }
            "BiasAdd" => self.emit(&name, "Add", ins, Vec::new()),
            "Relu6" => {
                let (low, high) = (self.scalar(&name, "min", 0.0), self.scalar(&name, "max", 6.0));
                self.emit(&name, "Clip", vec![ins[0].clone(), low, high], Vec::new())
            }
            "LeakyRelu" => self.emit(&name, "LeakyRelu", ins, vec![float("alpha", float_attr("alpha", 0.2))]),
            "Rsqrt" => {
                let root = self.emit_tensor(&format!("{name}#sqrt"), "Sqrt", ins, Vec::new());
                self.emit(&name, "Reciprocal", vec![root], Vec::new())
            }
            "Square" => self.emit(&name, "Mul", vec![ins[0].clone(), ins[0].clone()], Vec::new()),
            "SquaredDifference" => {
                let d = self.emit_tensor(&format!("{name}#difference"), "Sub", ins, Vec::new());
                self.emit(&name, "Mul", vec![d.clone(), d], Vec::new())
            }
            "Softmax" => self.emit(&name, "Softmax", ins, vec![int("axis", -1)]),
            // BatchMatMulV2/V3 broadcast their batch dimensions as ONNX's MatMul does; their
            // adj_x/adj_y (transposing the last two axes) are not translated yet.
            "BatchMatMulV2" | "BatchMatMulV3" | "BatchMatMul" if flag("adj_x") || flag("adj_y") => {
                Err(unsupported("adj_x/adj_y are not translated yet".into()))
            }
            "BatchMatMulV2" | "BatchMatMulV3" | "BatchMatMul" => self.emit(&name, "MatMul", ins, Vec::new()),
            "MatMul" => {
                let mut ins = ins;
                for (i, key) in [(0, "transpose_a"), (1, "transpose_b")] {
                    if flag(key) {
                        ins[i] = self.transpose(&format!("{name}#{key}"), &ins[i], &[1, 0]);
                    }
                }
                self.emit(&name, "MatMul", ins, Vec::new())
            }
            "Cast" => {
                let Some(AttrValue::Type(to)) = attr("DstT") else { return Err(unsupported("has no DstT".into())) };
                let dtype = tf_proto::dtype_from_tf(*to).map_err(|e| unsupported(e.to_string()))?;
                self.emit(&name, "Cast", ins, vec![int("to", onnx::onnx_type(dtype) as i64)])
            }
            // Keras 3 reshapes and squeezes its conv biases: constants in, constants out, so
            // the engine's passes see the bias as a weight.
            "Reshape" | "Squeeze" if self.fold_shape(&name, node, &inputs).is_some() => Ok(vec![Value::Tensor(format!("{name}:0"))]),
            "Reshape" => {
                let shape = self.as_int64(&name, "shape", &ins[1]);
                self.emit(&name, "Reshape", vec![ins[0].clone(), shape], Vec::new())
            }
            "Tile" => {
                let multiples = self.as_int64(&name, "multiples", &ins[1]);
                self.emit(&name, "Tile", vec![ins[0].clone(), multiples], Vec::new())
            }
            "Fill" => {
                let shape = self.as_int64(&name, "dims", &ins[0]);
                self.emit(&name, "Expand", vec![ins[1].clone(), shape], Vec::new())
            }
            "Range" => {
                // Keras' RNN trip count reduces over a Range of constants: fold it here, so
                // the reduction's (empty) axes are known.
                let bounds: Option<Vec<i64>> = (0..3).map(|i| self.known_ints(&inputs[i]).and_then(|v| v.first().copied())).collect();
                let int32 = self.known(&inputs[0]).is_some_and(|t| t.dtype() == crate::tensor::DType::I32);
                match bounds.as_deref() {
                    Some(&[start, limit, delta]) if delta != 0 => {
                        let count = ((limit - start) as f64 / delta as f64).ceil().max(0.0) as usize;
                        let values: Vec<i64> = (0..count as i64).map(|k| start + k * delta).collect();
                        let data = if int32 { TensorData::I32(values.iter().map(|&v| v as i32).collect()) } else { TensorData::I64(values) };
                        let output = format!("{name}:0");
                        self.initializer(&output, HostTensor::new(vec![count], data).expect("a vector of its own length"));
                        Ok(vec![Value::Tensor(output)])
                    }
                    _ => self.emit(&name, "Range", ins, Vec::new()),
                }
            }
            "Shape" => {
                // TF's Shape is int32 unless out_type says otherwise; ONNX's is int64.
                let shape = self.emit_tensor(&format!("{name}#int64"), "Shape", ins, Vec::new());
                let to = match attr("out_type") {
                    Some(AttrValue::Type(t)) if *t == crate::proto::tensorflow::DataType::DtInt64 as i32 => OnnxType::Int64,
                    _ => OnnxType::Int32,
                };
                self.emit(&name, "Cast", vec![shape], vec![int("to", to as i64)])
            }
            "Squeeze" => {
                let dims = list("squeeze_dims");
                if dims.is_empty() {
                    self.emit(&name, "Squeeze", ins, Vec::new())
                } else {
                    let axes = self.int64s(&format!("{name}#axes"), &dims);
                    self.emit(&name, "Squeeze", vec![ins[0].clone(), axes], Vec::new())
                }
            }
            "ExpandDims" => {
                let axis = self.known_ints(&inputs[1]).ok_or_else(|| unsupported("the axis is not constant".into()))?;
                let axes = self.int64s(&format!("{name}#axes"), &axis);
                self.emit(&name, "Unsqueeze", vec![ins[0].clone(), axes], Vec::new())
            }
            "Pack" => {
                let axis = int_attr("axis", 0);
                let axes = self.int64s(&format!("{name}#axes"), &[axis]);
                let parts = ins
                    .iter()
                    .enumerate()
                    .map(|(i, input)| self.emit_tensor(&format!("{name}#{i}"), "Unsqueeze", vec![input.clone(), axes.clone()], Vec::new()))
                    .collect();
                self.emit(&name, "Concat", parts, vec![int("axis", axis)])
            }
            "ConcatV2" => {
                let (values, _) = ins.split_at(ins.len() - 1);
                let axis = self.known_ints(&inputs[ins.len() - 1]).and_then(|a| a.first().copied());
                let axis = axis.ok_or_else(|| unsupported("the axis is not constant".into()))?;
                self.emit(&name, "Concat", values.to_vec(), vec![int("axis", axis)])
            }
            "Transpose" => {
                let perm = self.known_ints(&inputs[1]).ok_or_else(|| unsupported("the permutation is not constant".into()))?;
                self.emit(&name, "Transpose", vec![ins[0].clone()], vec![ints("perm", &perm)])
            }
            "Split" => {
                let axis = self.known_ints(&inputs[0]).and_then(|a| a.first().copied()).ok_or_else(|| unsupported("the axis is not constant".into()))?;
                let parts = int_attr("num_split", 1).max(1) as usize;
                self.emit_n(&name, "Split", vec![ins[1].clone()], parts, vec![int("axis", axis)])
            }
            "Unpack" => {
                let (axis, parts) = (int_attr("axis", 0), int_attr("num", 1).max(1) as usize);
                let pieces = self.emit_n(&format!("{name}#split"), "Split", vec![ins[0].clone()], parts, vec![int("axis", axis)])?;
                let axes = self.int64s(&format!("{name}#axes"), &[axis]);
                let mut outputs = Vec::with_capacity(parts);
                for (i, piece) in pieces.iter().enumerate() {
                    let piece = self.tensor(piece)?;
                    outputs.push(Value::Tensor(self.emit_tensor(&format!("{name}#{i}"), "Squeeze", vec![piece, axes.clone()], Vec::new())));
                }
                Ok(outputs)
            }
            "SplitV" => {
                let sizes = self.known_ints(&inputs[1]).ok_or_else(|| unsupported("the split sizes are not constant".into()))?;
                let axis = self.known_ints(&inputs[2]).and_then(|a| a.first().copied()).ok_or_else(|| unsupported("the axis is not constant".into()))?;
                if let Some(open) = sizes.iter().position(|&n| n == -1) {
                    // The one -1 part takes what the others leave of the axis, whose length
                    // may only be known at run time (a GRU's gates): slices from both ends.
                    let before: i64 = sizes[..open].iter().sum();
                    let after: i64 = sizes[open + 1..].iter().sum();
                    let mut outputs = Vec::with_capacity(sizes.len());
                    for (i, &size) in sizes.iter().enumerate() {
                        let end = |tail: i64| if tail == 0 { i64::MAX } else { -tail };
                        let (from, to) = match i.cmp(&open) {
                            std::cmp::Ordering::Less => {
                                let head: i64 = sizes[..i].iter().sum();
                                (head, head + size)
                            }
                            std::cmp::Ordering::Equal => (before, end(after)),
                            std::cmp::Ordering::Greater => {
                                let tail: i64 = sizes[i + 1..].iter().sum();
                                (-(tail + size), end(tail))
                            }
                        };
                        let operands = vec![
                            ins[0].clone(),
                            self.int64s(&format!("{name}#{i}_start"), &[from]),
                            self.int64s(&format!("{name}#{i}_end"), &[to]),
                            self.int64s(&format!("{name}#{i}_axis"), &[axis]),
                        ];
                        outputs.push(Value::Tensor(self.emit_tensor(&format!("{name}#{i}"), "Slice", operands, Vec::new())));
                    }
                    return Ok(outputs);
                }
                let split = self.int64s(&format!("{name}#split"), &sizes);
                self.emit_n(&name, "Split", vec![ins[0].clone(), split], sizes.len(), vec![int("axis", axis)])
            }
            "StridedSlice" => self.strided_slice(&name, &inputs, &ins, [int_attr("begin_mask", 0), int_attr("end_mask", 0), int_attr("ellipsis_mask", 0), int_attr("new_axis_mask", 0), int_attr("shrink_axis_mask", 0)]).map_err(unsupported),
            "Pad" | "PadV2" | "MirrorPad" => {
                let pairs = self.known_ints(&inputs[1]).ok_or_else(|| unsupported("the paddings are not constant".into()))?;
                let (before, after): (Vec<i64>, Vec<i64>) = pairs.chunks(2).map(|p| (p[0], p.get(1).copied().unwrap_or(0))).unzip();
                let pads = self.int64s(&format!("{name}#pads"), &[before, after].concat());
                let mode = match (op, attr("mode")) {
                    ("MirrorPad", Some(AttrValue::S(m))) if m.as_slice() == b"REFLECT" => "reflect",
                    ("MirrorPad", _) => return Err(unsupported("only REFLECT mirror padding is translated".into())),
                    _ => "constant",
                };
                let mut operands = vec![ins[0].clone(), pads];
                if op == "PadV2" {
                    operands.push(ins[2].clone());
                }
                self.emit(&name, "Pad", operands, vec![string("mode", mode)])
            }
            "GatherV2" => {
                if int_attr("batch_dims", 0) != 0 {
                    return Err(unsupported("batch_dims is not translated yet".into()));
                }
                let axis = self.known_ints(&inputs[2]).and_then(|a| a.first().copied()).ok_or_else(|| unsupported("the axis is not constant".into()))?;
                self.emit(&name, "Gather", vec![ins[0].clone(), ins[1].clone()], vec![int("axis", axis)])
            }
            "ResourceGather" => self.emit(&name, "Gather", ins, vec![int("axis", 0)]),
            "ReverseV2" => {
                let axes = self.known_ints(&inputs[1]).ok_or_else(|| unsupported("the axes are not constant".into()))?;
                let n = axes.len();
                let starts = self.int64s(&format!("{name}#starts"), &vec![-1; n]);
                let ends = self.int64s(&format!("{name}#ends"), &vec![i64::MIN; n]);
                let axes = self.int64s(&format!("{name}#axes"), &axes);
                let steps = self.int64s(&format!("{name}#steps"), &vec![-1; n]);
                self.emit(&name, "Slice", vec![ins[0].clone(), starts, ends, axes, steps], Vec::new())
            }
            "ArgMax" | "ArgMin" => {
                let axis = self.known_ints(&inputs[1]).and_then(|a| a.first().copied()).ok_or_else(|| unsupported("the axis is not constant".into()))?;
                let onnx_op = if op == "ArgMax" { "ArgMax" } else { "ArgMin" };
                let index = self.emit_tensor(&format!("{name}#int64"), onnx_op, vec![ins[0].clone()], vec![int("axis", axis), int("keepdims", 0)]);
                let to = match attr("output_type") {
                    Some(AttrValue::Type(t)) if *t == crate::proto::tensorflow::DataType::DtInt32 as i32 => OnnxType::Int32,
                    _ => OnnxType::Int64,
                };
                self.emit(&name, "Cast", vec![index], vec![int("to", to as i64)])
            }
            "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" => {
                if flag("is_training") {
                    return Err(unsupported("is_training is set: a serving graph normalises with its moving statistics".into()));
                }
                // y = x * a + b, a = scale / sqrt(variance + epsilon), b = offset - mean * a,
                // per channel (the last axis in NHWC, axis 1 in NCHW); the engine folds a and b
                // at load.
                let epsilon = self.scalar(&name, "epsilon", float_attr("epsilon", 1e-4));
                let var = self.emit_tensor(&format!("{name}#var_eps"), "Add", vec![ins[4].clone(), epsilon], Vec::new());
                let root = self.emit_tensor(&format!("{name}#std"), "Sqrt", vec![var], Vec::new());
                let a = self.emit_tensor(&format!("{name}#a"), "Div", vec![ins[1].clone(), root], Vec::new());
                let mean_a = self.emit_tensor(&format!("{name}#mean_a"), "Mul", vec![ins[3].clone(), a.clone()], Vec::new());
                let b = self.emit_tensor(&format!("{name}#b"), "Sub", vec![ins[2].clone(), mean_a], Vec::new());
                let (a, b) = if nchw { (self.per_channel(&name, "a", &a), self.per_channel(&name, "b", &b)) } else { (a, b) };
                let scaled = self.emit_tensor(&format!("{name}#scaled"), "Mul", vec![ins[0].clone(), a], Vec::new());
                self.emit(&name, "Add", vec![scaled, b], Vec::new())
            }
            "Conv2D" | "DepthwiseConv2dNative" | "MaxPool" | "AvgPool" => {
                // Lists are [1, h, w, 1] in NHWC and [1, 1, h, w] in NCHW; an NHWC op runs as
                // ONNX's NCHW one between two transposes, which the engine's layout pass
                // cancels between consecutive convs and pools.
                let (h, w) = if nchw { (2, 3) } else { (1, 2) };
                let spatial = |values: Vec<i64>, default: i64| if values.len() == 4 { vec![values[h], values[w]] } else { vec![default, default] };
                let mut attributes = match attr("padding") {
                    Some(AttrValue::S(p)) if p.as_slice() == b"SAME" => vec![string("auto_pad", "SAME_UPPER")],
                    Some(AttrValue::S(p)) if p.as_slice() == b"VALID" => vec![string("auto_pad", "VALID")],
                    Some(AttrValue::S(p)) if p.as_slice() == b"EXPLICIT" => {
                        // (before, after) pairs per axis to ONNX's [top, left, bottom, right].
                        let p = list("explicit_paddings");
                        if p.len() != 8 {
                            return Err(unsupported("explicit_paddings does not have 8 values".into()));
                        }
                        vec![ints("pads", &[p[2 * h], p[2 * w], p[2 * h + 1], p[2 * w + 1]])]
                    }
                    _ => return Err(unsupported("only SAME, VALID and EXPLICIT padding are translated".into())),
                };
                attributes.push(ints("strides", &spatial(list("strides"), 1)));
                let mut conv_inputs = vec![if nchw { ins[0].clone() } else { self.transpose(&format!("{name}#nchw"), &ins[0], &[0, 3, 1, 2]) }];
                let onnx_op = match op {
                    "Conv2D" => {
                        attributes.push(ints("dilations", &spatial(list("dilations"), 1)));
                        // HWIO filters to OIHW, at load when the filter is a constant: the
                        // engine's conv kernels take constant weights only.
                        conv_inputs.push(self.filter(&format!("{name}#oihw"), &inputs[1], &ins[1], &[3, 2, 0, 1], None));
                        "Conv"
                    }
                    "DepthwiseConv2dNative" => {
                        attributes.push(ints("dilations", &spatial(list("dilations"), 1)));
                        // [h, w, c, m] filters to [c*m, 1, h, w] in groups of one input channel:
                        // TF's output channel c*m + k is ONNX's too.
                        let shape = self.known(&inputs[1]).map(|t| t.shape().to_vec()).filter(|s| s.len() == 4);
                        let [h, w, c, m] = shape.ok_or_else(|| unsupported("the filter is not a constant of rank 4".into()))?[..] else { unreachable!() };
                        conv_inputs.push(self.filter(&format!("{name}#filter"), &inputs[1], &ins[1], &[2, 3, 0, 1], Some(vec![c * m, 1, h, w])));
                        attributes.push(int("group", c as i64));
                        "Conv"
                    }
                    pool => {
                        attributes.push(ints("kernel_shape", &spatial(list("ksize"), 1)));
                        if pool == "MaxPool" { "MaxPool" } else { "AveragePool" }
                    }
                };
                if nchw {
                    return self.emit(&name, onnx_op, conv_inputs, attributes);
                }
                let result = self.emit_tensor(&format!("{name}#nchw_out"), onnx_op, conv_inputs, attributes);
                self.emit(&name, "Transpose", vec![result], vec![ints("perm", &[0, 2, 3, 1])])
            }
            // An op outside the table becomes a node of the `tensorflow` domain, so that the
            // engine's importer lists every such op with its nodes in one message, as it does
            // for ONNX files, rather than the load stopping at the first.
            other => {
                let node = onnx::node(other, &name, ins, (0..UNTRANSLATED_OUTPUTS).map(|k| format!("{name}:{k}")).collect(), Vec::new());
                self.nodes.push(crate::proto::onnx::NodeProto { domain: UNTRANSLATED_DOMAIN.into(), ..node });
                Ok((0..UNTRANSLATED_OUTPUTS).map(|k| Value::Tensor(format!("{name}:{k}"))).collect())
            }
        }
    }
}
