//! Classify, Regress and MultiInference on one servable: a signature of the right method that
//! takes tf.Examples runs on the request's Examples, and its outputs are read as TF Serving's
//! classifier (`classes`, `scores`) and regressor (`outputs`) read them.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::example::ExampleError;
use crate::proto::tensorflow::Example;
use crate::proto::tensorflow::serving::{Input, input};
use crate::tensor::{HostTensor, TensorData};

use super::{DEFAULT_SIGNATURE, PredictError, RequestError, Servable, Timeline};

pub const CLASSIFY_METHOD: &str = "tensorflow/serving/classify";
pub const REGRESS_METHOD: &str = "tensorflow/serving/regress";

/// The two tf.Example methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Classify,
    Regress,
}

impl Method {
    /// A MultiInference task's `method_name`.
    pub fn from_name(name: &str) -> Result<Method, RequestError> {
        match name {
            CLASSIFY_METHOD => Ok(Method::Classify),
            REGRESS_METHOD => Ok(Method::Regress),
            other => Err(RequestError::Invalid(format!("Unsupported signature method_name: {other}"))),
        }
    }

    pub fn method_name(self) -> &'static str {
        match self {
            Method::Classify => CLASSIFY_METHOD,
            Method::Regress => REGRESS_METHOD,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Method::Classify => "classification",
            Method::Regress => "regression",
        }
    }
}

/// A request's Examples and their shared context.
#[derive(Clone, Copy)]
pub struct Examples<'a> {
    pub examples: &'a [Example],
    pub context: Option<&'a Example>,
}

impl<'a> Examples<'a> {
    pub fn of(input: Option<&'a Input>) -> Result<Self, RequestError> {
        let examples = match input.and_then(|i| i.kind.as_ref()) {
            Some(input::Kind::ExampleList(list)) => Examples { examples: &list.examples, context: None },
            Some(input::Kind::ExampleListWithContext(list)) => Examples { examples: &list.examples, context: list.context.as_ref() },
            None => Examples { examples: &[], context: None },
        };
        if examples.examples.is_empty() {
            return Err(ExampleError::Empty.into());
        }
        Ok(examples)
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }
}

/// One task's answer, one entry per example.
#[derive(Debug, Clone, PartialEq)]
pub enum InferenceOutput {
    /// (label, score) per class; a missing label is "", a missing score 0.
    Classifications(Vec<Vec<(String, f32)>>),
    Regressions(Vec<f32>),
}

#[derive(Debug)]
pub struct InferenceOutcome {
    pub signature_name: String,
    pub output: InferenceOutput,
    pub timeline: Timeline,
}

impl Servable {
    /// Runs `method` through signature `signature_name` ("" = `serving_default`).
    pub async fn infer_examples(
        &self,
        method: Method,
        signature_name: &str,
        examples: Examples<'_>,
        deadline: Option<Instant>,
    ) -> Result<InferenceOutcome, PredictError> {
        let key = if signature_name.is_empty() { DEFAULT_SIGNATURE } else { signature_name };
        if self.declared_signatures().is_none() {
            // ONNX files declare no signatures of these methods.
            let available = self.signatures().values().map(|s| format!("{} ({})", s.name, s.method_name)).collect::<Vec<_>>().join(", ");
            return Err(RequestError::NoExampleSignatures { method: method.method_name(), signature: key.to_string(), available }.into());
        }
        let signature = self.signatures().get(key).ok_or_else(|| RequestError::NoSignature(key.to_string()))?;
        if signature.method_name != method.method_name() {
            return Err(RequestError::WrongMethod { noun: method.noun(), expected: method.method_name(), got: signature.method_name.clone() }.into());
        }
        let runner = self.runner(signature)?;
        let parsing = runner.examples.clone().ok_or_else(|| {
            RequestError::Invalid(format!("signature {key} does not take serialized tf.Examples: its input is not a DT_STRING that feeds ParseExample"))
        })?;
        let inputs = parsing.input.tensors(examples.examples, examples.context).map_err(RequestError::from)?;
        let (results, timeline) = runner.run(inputs, deadline).await?;
        let outputs: HashMap<&str, HostTensor> = signature.outputs.iter().map(|s| s.key.as_str()).zip(results).collect();
        let rows: HashMap<&str, &Vec<String>> = parsing.constant_rows.iter().map(|(k, row)| (k.as_str(), row)).collect();
        let output = match method {
            Method::Classify => classifications(examples.len(), &outputs, &rows)?,
            Method::Regress => regressions(examples.len(), &outputs)?,
        };
        Ok(InferenceOutcome { signature_name: key.to_string(), output, timeline })
    }

    /// MultiInference: each task (method, signature) on the same Examples, in task order.
    pub async fn multi_infer(&self, tasks: &[(Method, String)], examples: Examples<'_>, deadline: Option<Instant>) -> Result<Vec<InferenceOutcome>, PredictError> {
        let mut seen = HashSet::new();
        for (_, signature) in tasks {
            let key = if signature.is_empty() { DEFAULT_SIGNATURE } else { signature.as_str() };
            if !seen.insert(key) {
                return Err(RequestError::Invalid(format!("Duplicate evaluation of signature: {key}")).into());
            }
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        for (method, signature) in tasks {
            outcomes.push(self.infer_examples(*method, signature, examples, deadline).await?);
        }
        Ok(outcomes)
    }
}

fn classifications(n: usize, outputs: &HashMap<&str, HostTensor>, rows: &HashMap<&str, &Vec<String>>) -> Result<InferenceOutput, RequestError> {
    let labels = rows.get("classes").copied();
    if outputs.contains_key("classes") {
        return Err(RequestError::Invalid("classes output must be DT_STRING labels".into()));
    }
    let scores = match outputs.get("scores") {
        Some(scores) => Some(floats(scores, "scores")?),
        None => None,
    };
    let classes = match (&scores, labels) {
        (Some((shape, _)), _) if shape.len() != 2 || shape[0] != n => {
            return Err(RequestError::Invalid(format!("Expected Tensor shape: [{n} num_classes] but got {shape:?}")));
        }
        (Some((shape, _)), Some(labels)) if shape[1] != labels.len() => {
            return Err(RequestError::Invalid(format!("Tensors class and score should match in shape: [{n} {}] and {shape:?}", labels.len())));
        }
        (Some((shape, _)), _) => shape[1],
        (None, Some(labels)) => labels.len(),
        (None, None) => return Err(RequestError::Invalid("Expected classification signature outputs to contain classes or scores".into())),
    };
    let results = (0..n)
        .map(|i| {
            (0..classes)
                .map(|j| {
                    let label = labels.map(|l| l[j].clone()).unwrap_or_default();
                    let score = scores.as_ref().map_or(0.0, |(_, v)| v[i * classes + j]);
                    (label, score)
                })
                .collect()
        })
        .collect();
    Ok(InferenceOutput::Classifications(results))
}

fn regressions(n: usize, outputs: &HashMap<&str, HostTensor>) -> Result<InferenceOutput, RequestError> {
    let tensor = outputs.get("outputs").ok_or_else(|| RequestError::Invalid("Expected regression signature outputs to contain outputs".into()))?;
    let (shape, values) = floats(tensor, "outputs")?;
    if !matches!(shape.as_slice(), [b] | [b, 1] if *b == n) {
        return Err(RequestError::Invalid(format!("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {shape:?}")));
    }
    Ok(InferenceOutput::Regressions(values))
}

fn floats(tensor: &HostTensor, key: &str) -> Result<(Vec<usize>, Vec<f32>), RequestError> {
    match tensor.data() {
        TensorData::F32(v) => Ok((tensor.shape().to_vec(), v.clone())),
        _ => Err(RequestError::Invalid(format!("Expected {key} Tensor of DT_FLOAT, got {}", tensor.dtype()))),
    }
}
