//! Classify, Regress and MultiInference over gRPC: decode the request, run it through the
//! request core's admission and recording, encode TF Serving's result messages.

use std::time::Instant;

use tonic::Request;

use crate::error::ServingError;
use crate::proto::tensorflow::serving::{
    Class, ClassificationRequest, Input, ModelSpec, ClassificationResponse, ClassificationResult, Classifications, InferenceResult, MultiInferenceRequest,
    MultiInferenceResponse, Regression, RegressionRequest, RegressionResponse, RegressionResult, inference_result,
};
use crate::request::RequestCore;
use crate::servable::{Examples, InferenceOutput, Method, RequestError};

use super::model_spec;
use super::prediction::{HasModelSpec, grpc_deadline, incoming};

pub(super) async fn classify(core: &RequestCore, request: Request<ClassificationRequest>) -> Result<ClassificationResponse, ServingError> {
    let (model_spec, output) = one_task(core, request, "Classify", Method::Classify, |r| (r.model_spec.as_ref(), r.input.as_ref())).await?;
    Ok(ClassificationResponse { model_spec: Some(model_spec), result: Some(classification_result(output)) })
}

pub(super) async fn regress(core: &RequestCore, request: Request<RegressionRequest>) -> Result<RegressionResponse, ServingError> {
    let (model_spec, output) = one_task(core, request, "Regress", Method::Regress, |r| (r.model_spec.as_ref(), r.input.as_ref())).await?;
    Ok(RegressionResponse { model_spec: Some(model_spec), result: Some(regression_result(output)) })
}

/// Classify or Regress: one signature of `method` on the request's Examples, run through the
/// request core (admission, recording); returns the echoed spec and the answer.
async fn one_task<T: HasModelSpec>(
    core: &RequestCore,
    request: Request<T>,
    api: &'static str,
    method: Method,
    parts: impl Fn(&T) -> (Option<&ModelSpec>, Option<&Input>),
) -> Result<(ModelSpec, InferenceOutput), ServingError> {
    let deadline = grpc_deadline(&request, Instant::now());
    let mut flow = core.begin(incoming(&request, api));
    let request = request.into_inner();
    let (spec, input) = parts(&request);
    let result = async {
        let (_, version) = model_spec::parse(spec)?;
        let signature = spec.map(|s| s.signature_name.clone()).unwrap_or_default();
        let examples = Examples::of(input)?;
        flow.admit()?;
        let servable = flow.resolve(&version)?;
        flow.count_examples(examples.len());
        let outcome = servable.infer_examples(method, &signature, examples, deadline).await?;
        flow.ran(outcome.timeline);
        Ok((model_spec::echo(servable.name(), servable.version(), &outcome.signature_name), outcome.output))
    }
    .await;
    flow.finish(result)
}

pub(super) async fn multi_inference(core: &RequestCore, request: Request<MultiInferenceRequest>) -> Result<MultiInferenceResponse, ServingError> {
    let deadline = grpc_deadline(&request, Instant::now());
    let mut flow = core.begin(incoming(&request, "MultiInference"));
    let request = request.into_inner();
    let result = async {
        let first = request.tasks.first().ok_or_else(|| RequestError::Invalid("MultiInferenceRequest must contain at least one task".into()))?;
        let (model, version) = model_spec::parse(first.model_spec.as_ref())?;
        let mut tasks = Vec::with_capacity(request.tasks.len());
        for task in &request.tasks {
            let (name, _) = model_spec::parse(task.model_spec.as_ref())?;
            if name != model {
                return Err(RequestError::Invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.".into()).into());
            }
            let signature = task.model_spec.as_ref().map(|s| s.signature_name.clone()).unwrap_or_default();
            tasks.push((Method::from_name(&task.method_name)?, signature));
        }
        let examples = Examples::of(request.input.as_ref())?;
        flow.admit()?;
        let servable = flow.resolve(&version)?;
        flow.count_examples(examples.len());
        let outcomes = servable.multi_infer(&tasks, examples, deadline).await?;
        if let Some(last) = outcomes.last() {
            flow.ran(last.timeline);
        }
        let results = outcomes
            .into_iter()
            .map(|outcome| InferenceResult {
                model_spec: Some(model_spec::echo(servable.name(), servable.version(), &outcome.signature_name)),
                result: Some(match outcome.output {
                    output @ InferenceOutput::Classifications(_) => inference_result::Result::ClassificationResult(classification_result(output)),
                    output @ InferenceOutput::Regressions(_) => inference_result::Result::RegressionResult(regression_result(output)),
                }),
            })
            .collect();
        Ok(MultiInferenceResponse { results })
    }
    .await;
    flow.finish(result)
}

fn classification_result(output: InferenceOutput) -> ClassificationResult {
    let InferenceOutput::Classifications(rows) = output else { return ClassificationResult::default() };
    ClassificationResult {
        classifications: rows
            .into_iter()
            .map(|classes| Classifications { classes: classes.into_iter().map(|(label, score)| Class { label, score }).collect() })
            .collect(),
    }
}

fn regression_result(output: InferenceOutput) -> RegressionResult {
    let InferenceOutput::Regressions(values) = output else { return RegressionResult::default() };
    RegressionResult { regressions: values.into_iter().map(|value| Regression { value }).collect() }
}
