use crate::proto::tensorflow::serving::ModelSpec;
use crate::proto::tensorflow::serving::model_spec::VersionChoice;
use crate::repository::VersionRequest;
use crate::servable::RequestError;

/// Name and version request of a `ModelSpec`, with TF Serving's errors for missing parts.
pub(super) fn parse(spec: Option<&ModelSpec>) -> Result<(&str, VersionRequest), RequestError> {
    let spec = spec.ok_or(RequestError::MissingModelSpec)?;
    if spec.name.is_empty() {
        return Err(RequestError::EmptyModelName);
    }
    let version = match &spec.version_choice {
        None => VersionRequest::Latest,
        Some(VersionChoice::Version(v)) => VersionRequest::Specific(*v),
        Some(VersionChoice::VersionLabel(label)) => VersionRequest::Label(label.clone()),
    };
    Ok((&spec.name, version))
}

/// The `model_spec` echoed in responses: the served version and, for inference, the
/// resolved signature name.
pub(super) fn echo(name: &str, version: i64, signature_name: &str) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        signature_name: signature_name.to_string(),
        version_choice: Some(VersionChoice::Version(version)),
    }
}
