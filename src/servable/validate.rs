//! Checks a request against a signature before any tensor data is materialised.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::tensor::tf_proto::TensorError;
use crate::tensor::{DType, TensorSpec};

use super::Signature;

#[derive(Debug, Error)]
pub enum RequestError {
    #[error("Missing ModelSpec")]
    MissingModelSpec,
    #[error("ModelSpec has no name specified.")]
    EmptyModelName,
    #[error("Serving signature key \"{name}\" not found. Available signatures: {available}")]
    UnknownSignature { name: String, available: String },
    /// Classify/Regress naming a signature the model lacks.
    #[error("No signature was found with the name: {0}")]
    NoSignature(String),
    #[error("Expected {noun} signature method_name to be {expected}. Was: {got}")]
    WrongMethod { noun: &'static str, expected: &'static str, got: String },
    /// Classify/Regress on a model (ONNX) that declares no such signatures.
    #[error("signature \"{signature}\" cannot answer {method}: this model has no classify or regress signatures (it has {available}); ONNX models serve Predict only")]
    NoExampleSignatures { method: &'static str, signature: String, available: String },
    #[error(transparent)]
    Example(#[from] crate::example::ExampleError),
    /// Listed in metadata, but not runnable here (e.g. a classify signature whose example
    /// parsing is not translated).
    #[error("signature \"{name}\" cannot be run: {reason}")]
    NotRunnable { name: String, reason: String },
    #[error(
        "input size does not match signature: {got}!={want} len({sent}) != len({expected}). Sent extra: {extra}. Missing but required: {missing}."
    )]
    InputCount { got: usize, want: usize, sent: String, expected: String, extra: String, missing: String },
    #[error(
        "Signature input alias: {missing} not found in request. Inputs expected to be in the request {expected}, got {sent}"
    )]
    MissingInput { missing: String, expected: String, sent: String },
    #[error("Expects input '{key}' to be {expected} but {got} is provided")]
    DTypeMismatch { key: String, expected: DType, got: DType },
    #[error("input '{key}' has shape {got} but the signature expects {expected}")]
    ShapeMismatch { key: String, expected: String, got: String },
    #[error("tensor parsing error: {key}: {source}")]
    Tensor {
        key: String,
        #[source]
        source: TensorError,
    },
    #[error("output tensor alias not found in signature: {alias} Outputs expected to be in the set {expected}.")]
    UnknownOutput { alias: String, expected: String },
    #[error("duplicate output tensor alias: {0}")]
    DuplicateOutput(String),
    #[error("{0}")]
    Invalid(String),
}

fn set_string<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    let sorted: BTreeSet<&str> = keys.into_iter().collect();
    format!("{{{}}}", sorted.into_iter().collect::<Vec<_>>().join(","))
}

/// The request must name exactly the signature's inputs: no more, no fewer.
pub fn check_input_keys<'a>(signature: &Signature, sent: impl IntoIterator<Item = &'a str>) -> Result<(), RequestError> {
    let sent: BTreeSet<&str> = sent.into_iter().collect();
    let expected: BTreeSet<&str> = signature.input_keys().into_iter().collect();
    if sent == expected {
        return Ok(());
    }
    let extra = sent.difference(&expected).copied();
    let missing: Vec<&str> = expected.difference(&sent).copied().collect();
    if sent.len() != expected.len() {
        return Err(RequestError::InputCount {
            got: sent.len(),
            want: expected.len(),
            sent: set_string(sent.iter().copied()),
            expected: set_string(expected.iter().copied()),
            extra: set_string(extra),
            missing: set_string(missing.iter().copied()),
        });
    }
    Err(RequestError::MissingInput {
        missing: missing.join(","),
        expected: set_string(expected.iter().copied()),
        sent: set_string(sent.iter().copied()),
    })
}

/// dtype and shape of one request tensor against its spec.
pub fn check_input(spec: &TensorSpec, dtype: DType, shape: &[usize]) -> Result<(), RequestError> {
    if dtype != spec.dtype {
        return Err(RequestError::DTypeMismatch { key: spec.key.clone(), expected: spec.dtype, got: dtype });
    }
    if !spec.accepts_shape(shape) {
        let got = format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","));
        return Err(RequestError::ShapeMismatch { key: spec.key.clone(), expected: spec.shape_string(), got });
    }
    Ok(())
}

/// Indices of the outputs to return; an empty filter means all of them, in signature order.
pub fn select_outputs(signature: &Signature, filter: &[String]) -> Result<Vec<usize>, RequestError> {
    if filter.is_empty() {
        return Ok((0..signature.outputs.len()).collect());
    }
    let mut picked = Vec::with_capacity(filter.len());
    for alias in filter {
        let index = signature.outputs.iter().position(|o| &o.key == alias).ok_or_else(|| RequestError::UnknownOutput {
            alias: alias.clone(),
            expected: set_string(signature.output_keys()),
        })?;
        if picked.contains(&index) {
            return Err(RequestError::DuplicateOutput(alias.clone()));
        }
        picked.push(index);
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Dim;

    fn sig() -> Signature {
        let spec = |key: &str| TensorSpec {
            key: key.into(),
            dtype: DType::F32,
            shape: Some(vec![Dim::Dynamic, Dim::Fixed(2)]),
        };
        Signature { name: "serving_default".into(), method_name: String::new(), inputs: vec![spec("a"), spec("b")], outputs: vec![spec("y")] }
    }

    #[test]
    fn key_errors_name_what_was_expected() {
        let e = check_input_keys(&sig(), ["a"]).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "input size does not match signature: 1!=2 len({a}) != len({a,b}). Sent extra: {}. Missing but required: {b}."
        );
        let e = check_input_keys(&sig(), ["a", "c"]).expect_err("misnamed");
        assert!(e.to_string().contains("Signature input alias: b not found in request"), "{e}");
        assert!(e.to_string().contains("{a,b}"), "{e}");
        assert!(check_input_keys(&sig(), ["b", "a"]).is_ok());
    }

    #[test]
    fn dtype_and_shape_errors_name_both_sides() {
        let s = &sig().inputs[0];
        let e = check_input(s, DType::I32, &[1, 2]).expect_err("dtype");
        assert_eq!(e.to_string(), "Expects input 'a' to be DT_FLOAT but DT_INT32 is provided");
        let e = check_input(s, DType::F32, &[1, 3]).expect_err("shape");
        assert_eq!(e.to_string(), "input 'a' has shape [1,3] but the signature expects [-1,2]");
        assert!(check_input(s, DType::F32, &[7, 2]).is_ok());
    }

    #[test]
    fn output_filter_rejects_unknown_and_duplicate_aliases() {
        assert_eq!(select_outputs(&sig(), &[]).expect("all"), vec![0]);
        assert!(select_outputs(&sig(), &["z".into()]).expect_err("unknown").to_string().contains("{y}"));
        assert!(matches!(select_outputs(&sig(), &["y".into(), "y".into()]), Err(RequestError::DuplicateOutput(_))));
    }
}
