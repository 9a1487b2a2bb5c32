//! tf.Example input for Classify, Regress and MultiInference: the dense features a signature's
//! `ParseExample` reads, and the batch of tensors a list of Examples becomes.
//!
//! TF Serving serializes the Examples into a string tensor and the graph's ParseExample op
//! decodes them. The engine has no strings, so the SavedModel translation cuts the graph at
//! ParseExample: its dense outputs become graph inputs, described here, and the request's
//! Examples are decoded into them before the engine runs. The checks and messages follow
//! TensorFlow's example parser.

use thiserror::Error;

use crate::proto::tensorflow::{Example, Feature, feature};
use crate::tensor::{DType, HostTensor, TensorData};

/// One dense feature of a ParseExample: where it goes and how an Example's feature fills it.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseFeature {
    /// The feature's key in the Examples.
    pub key: String,
    /// The engine graph input it feeds.
    pub input: String,
    /// DT_FLOAT or DT_INT64 (DT_STRING features are refused at load).
    pub dtype: DType,
    /// Per-example shape; the batch tensor is `[examples, shape...]`.
    pub shape: Vec<usize>,
    /// The value of an Example that lacks the feature; `None`: the feature is required.
    pub default: Option<TensorData>,
}

/// The Examples a signature takes, as its ParseExample describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleInput {
    /// The signature's input key (`inputs` in Estimator exports).
    pub key: String,
    pub features: Vec<DenseFeature>,
}

/// A signature that takes tf.Examples: how they become its inputs, and its outputs that are
/// constant string rows (a classifier's labels), repeated for each example.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleSignature {
    pub input: ExampleInput,
    pub constant_rows: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Error, PartialEq)]
pub enum ExampleError {
    #[error("Input is empty")]
    Empty,
    #[error("Name: <unknown>, Feature: {key} (data type: {dtype}) is required but could not be found. (example {index})")]
    Missing { key: String, dtype: &'static str, index: usize },
    #[error("Name: <unknown>, Key: {key}, Index: {index}.  Data types don't match. Expected type: {expected}, Actual type: {actual}")]
    WrongType { key: String, index: usize, expected: &'static str, actual: &'static str },
    #[error("Name: <unknown>, Key: {key}, Index: {index}.  Number of {dtype} values != expected.  values size: {got} but output shape: {shape:?}")]
    WrongLength { key: String, index: usize, dtype: &'static str, got: usize, shape: Vec<usize> },
}

/// TensorFlow's short name of a feature dtype.
fn type_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float",
        DType::I64 => "int64",
        _ => "unsupported",
    }
}

fn kind_name(feature: &Feature) -> &'static str {
    match &feature.kind {
        Some(feature::Kind::FloatList(_)) => "float",
        Some(feature::Kind::Int64List(_)) => "int64",
        Some(feature::Kind::BytesList(_)) => "string",
        None => "none",
    }
}

impl ExampleInput {
    /// The graph inputs for `examples`, in feature order. A feature is looked up in the
    /// example first, then in `context` (TF Serving's ExampleListWithContext), then its default.
    pub fn tensors(&self, examples: &[Example], context: Option<&Example>) -> Result<Vec<HostTensor>, ExampleError> {
        if examples.is_empty() {
            return Err(ExampleError::Empty);
        }
        let lookup = |example: &'_ Example, key: &str| example.features.as_ref().and_then(|f| f.feature.get(key)).cloned();
        self.features
            .iter()
            .map(|spec| {
                let per_example: usize = spec.shape.iter().product();
                let mut floats = Vec::new();
                let mut ints = Vec::new();
                for (index, example) in examples.iter().enumerate() {
                    let found = lookup(example, &spec.key).or_else(|| context.and_then(|c| lookup(c, &spec.key)));
                    let values = match (found, &spec.default) {
                        (Some(feature), _) => Some(feature),
                        (None, Some(default)) => {
                            match (default, spec.dtype) {
                                (TensorData::F32(v), DType::F32) if !v.is_empty() => floats.extend(v.iter().copied().cycle().take(per_example)),
                                (TensorData::I64(v), DType::I64) if !v.is_empty() => ints.extend(v.iter().copied().cycle().take(per_example)),
                                _ => return Err(ExampleError::Missing { key: spec.key.clone(), dtype: type_name(spec.dtype), index }),
                            }
                            None
                        }
                        (None, None) => return Err(ExampleError::Missing { key: spec.key.clone(), dtype: type_name(spec.dtype), index }),
                    };
                    let Some(feature) = values else { continue };
                    let wrong_type = || ExampleError::WrongType { key: spec.key.clone(), index, expected: type_name(spec.dtype), actual: kind_name(&feature) };
                    let got = match (&feature.kind, spec.dtype) {
                        (Some(feature::Kind::FloatList(l)), DType::F32) => {
                            floats.extend_from_slice(&l.value);
                            l.value.len()
                        }
                        (Some(feature::Kind::Int64List(l)), DType::I64) => {
                            ints.extend_from_slice(&l.value);
                            l.value.len()
                        }
                        _ => return Err(wrong_type()),
                    };
                    if got != per_example {
                        return Err(ExampleError::WrongLength { key: spec.key.clone(), index, dtype: type_name(spec.dtype), got, shape: spec.shape.clone() });
                    }
                }
                let mut shape = vec![examples.len()];
                shape.extend_from_slice(&spec.shape);
                let data = if spec.dtype == DType::I64 { TensorData::I64(ints) } else { TensorData::F32(floats) };
                let got = data.len();
                HostTensor::new(shape, data).map_err(|_| ExampleError::WrongLength {
                    key: spec.key.clone(),
                    index: 0,
                    dtype: type_name(spec.dtype),
                    got,
                    shape: spec.shape.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tensorflow::{Features, FloatList, Int64List};

    fn example(features: &[(&str, Feature)]) -> Example {
        Example { features: Some(Features { feature: features.iter().map(|(k, f)| (k.to_string(), f.clone())).collect() }) }
    }

    fn floats(v: &[f32]) -> Feature {
        Feature { kind: Some(feature::Kind::FloatList(FloatList { value: v.to_vec() })) }
    }

    fn input(default: Option<TensorData>) -> ExampleInput {
        ExampleInput {
            key: "inputs".into(),
            features: vec![DenseFeature { key: "x".into(), input: "x".into(), dtype: DType::F32, shape: vec![2], default }],
        }
    }

    #[test]
    fn examples_become_a_batch_and_the_example_wins_over_the_context() {
        let context = example(&[("x", floats(&[9.0, 9.0]))]);
        let batch = [example(&[("x", floats(&[1.0, 2.0]))]), example(&[])];
        let tensors = input(None).tensors(&batch, Some(&context)).expect("parse");
        assert_eq!(tensors[0].shape(), &[2, 2]);
        assert_eq!(tensors[0].data(), &TensorData::F32(vec![1.0, 2.0, 9.0, 9.0]));
    }

    #[test]
    fn defaults_fill_missing_features_and_required_ones_are_named() {
        let batch = [example(&[]), example(&[("x", floats(&[3.0, 4.0]))])];
        let tensors = input(Some(TensorData::F32(vec![0.5]))).tensors(&batch, None).expect("parse");
        assert_eq!(tensors[0].data(), &TensorData::F32(vec![0.5, 0.5, 3.0, 4.0]));
        let err = input(None).tensors(&batch, None).expect_err("missing").to_string();
        assert_eq!(err, "Name: <unknown>, Feature: x (data type: float) is required but could not be found. (example 0)");
    }

    #[test]
    fn wrong_types_lengths_and_empty_inputs_are_refused() {
        let ints = Feature { kind: Some(feature::Kind::Int64List(Int64List { value: vec![1, 2] })) };
        let err = input(None).tensors(&[example(&[("x", ints)])], None).expect_err("type");
        assert_eq!(err, ExampleError::WrongType { key: "x".into(), index: 0, expected: "float", actual: "int64" });
        let err = input(None).tensors(&[example(&[("x", floats(&[1.0]))])], None).expect_err("length").to_string();
        assert!(err.contains("values size: 1 but output shape: [2]"), "{err}");
        assert_eq!(input(None).tensors(&[], None), Err(ExampleError::Empty));
    }
}
