//! Model status and metadata as TF Serving prints them: the proto3 JSON of
//! `GetModelStatusResponse` / `GetModelMetadataResponse` with original (snake_case) field
//! names, defaults printed, int64 as strings and enums by name. Written field by field in
//! proto declaration order, because existing clients and tests compare these documents.

use crate::repository::{ModelRepository, VersionRequest, VersionState};
use crate::proto::tensorflow::{DataType, SignatureDef, TensorInfo, tensor_info};

use crate::transport::json::Writer;
use super::reply::RestError;

fn state_name(state: VersionState) -> &'static str {
    match state {
        VersionState::Start => "START",
        VersionState::Loading => "LOADING",
        VersionState::Available => "AVAILABLE",
        VersionState::Unloading => "UNLOADING",
        VersionState::End => "END",
    }
}

/// `GET /v1/models/{name}[/versions/{v}]`: every version newest first, or the one asked for.
pub(super) fn status(repository: &ModelRepository, model: &str, version: Option<i64>) -> Result<String, RestError> {
    let statuses = repository.status(model, version)?;
    let mut w = Writer::with_capacity(128 * statuses.len());
    w.begin_object().key("model_version_status").begin_array();
    for s in &statuses {
        w.begin_object();
        w.key("version").string(&s.version.to_string());
        w.key("state").string(state_name(s.state));
        w.key("status").begin_object();
        // A version that failed keeps its error; gRPC reports those as UNKNOWN, and so do we.
        let (code, message) = match &s.error {
            None => ("OK", ""),
            Some(message) => ("UNKNOWN", message.as_str()),
        };
        w.key("error_code").string(code).key("error_message").string(message);
        w.end_object().end_object();
    }
    w.end_array().end_object();
    Ok(w.finish())
}

/// `GET .../metadata`: the served version and its `signature_def` map. Returns the served
/// version too, for the request metric.
pub(super) fn metadata(repository: &ModelRepository, model: &str, version: &VersionRequest) -> Result<(i64, String), RestError> {
    let servable = repository.resolve(model, version)?;
    let mut w = Writer::with_capacity(1024);
    w.begin_object();
    w.key("model_spec").begin_object();
    w.key("name").string(servable.name());
    w.key("signature_name").string("");
    w.key("version").string(&servable.version().to_string());
    w.end_object();
    // `metadata` maps "signature_def" to an Any holding a SignatureDefMap, whose only field is
    // also `signature_def`: hence the doubled key.
    w.key("metadata").begin_object().key("signature_def").begin_object().key("signature_def").begin_object();
    let map = servable.signature_def_map();
    for (name, signature) in sorted(&map.signature_def) {
        w.key(name);
        signature_def(&mut w, signature);
    }
    w.end_object().end_object().end_object();
    w.end_object();
    Ok((servable.version(), w.finish()))
}

/// Proto maps have no order; documents print keys sorted so they are stable.
fn sorted<V>(map: &std::collections::HashMap<String, V>) -> Vec<(&String, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn signature_def(w: &mut Writer, signature: &SignatureDef) {
    w.begin_object();
    for (field, tensors) in [("inputs", &signature.inputs), ("outputs", &signature.outputs)] {
        w.key(field).begin_object();
        for (key, info) in sorted(tensors) {
            w.key(key);
            tensor_info(w, info);
        }
        w.end_object();
    }
    w.key("method_name").string(&signature.method_name);
    // Signature defaults (rare: TF's own exporters never set them) are not printed.
    w.key("defaults").begin_object().end_object();
    w.end_object();
}

fn tensor_info(w: &mut Writer, info: &TensorInfo) {
    w.begin_object();
    let dtype = DataType::try_from(info.dtype).map(|d| d.as_str_name().to_string()).unwrap_or_else(|_| info.dtype.to_string());
    w.key("dtype").string(&dtype);
    let shape = info.tensor_shape.clone().unwrap_or_default();
    w.key("tensor_shape").begin_object();
    w.key("dim").begin_array();
    for dim in &shape.dim {
        w.begin_object().key("size").string(&dim.size.to_string()).key("name").string(&dim.name).end_object();
    }
    w.end_array();
    w.key("unknown_rank").bool(shape.unknown_rank);
    w.end_object();
    if let Some(tensor_info::Encoding::Name(name)) = &info.encoding {
        w.key("name").string(name);
    }
    w.end_object();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_info_prints_defaults() {
        let info = |key: &str, dtype: DataType, dims: Option<Vec<i64>>| TensorInfo {
            dtype: dtype as i32,
            tensor_shape: Some(match dims {
                Some(dims) => crate::tensor::tf_proto::shape_to_tf(dims),
                None => crate::proto::tensorflow::TensorShapeProto { dim: Vec::new(), unknown_rank: true },
            }),
            encoding: Some(tensor_info::Encoding::Name(key.into())),
        };
        let mut w = Writer::new();
        tensor_info(&mut w, &info("x", DataType::DtFloat, Some(vec![-1, 3])));
        assert_eq!(
            w.finish(),
            r#"{"dtype":"DT_FLOAT","tensor_shape":{"dim":[{"size":"-1","name":""},{"size":"3","name":""}],"unknown_rank":false},"name":"x"}"#
        );
        let mut w = Writer::new();
        tensor_info(&mut w, &info("y", DataType::DtInt64, None));
        assert_eq!(w.finish(), r#"{"dtype":"DT_INT64","tensor_shape":{"dim":[],"unknown_rank":true},"name":"y"}"#);
    }

    #[test]
    fn status_of_unknown_models_is_not_found() {
        let repository = ModelRepository::new();
        repository.set_state("m", 2, VersionState::End, Some("broken".into()));
        repository.set_state("m", 1, VersionState::Loading, None);
        assert_eq!(
            status(&repository, "m", None).expect("status"),
            r#"{"model_version_status":[{"version":"2","state":"END","status":{"error_code":"UNKNOWN","error_message":"broken"}},{"version":"1","state":"LOADING","status":{"error_code":"OK","error_message":""}}]}"#
        );
        let e = status(&repository, "zzz", None).expect_err("unknown");
        assert_eq!((e.kind().http_status(), e.to_string().as_str()), (404, "Could not find any versions of model zzz"));
        let e = status(&repository, "m", Some(5)).expect_err("unknown version");
        assert_eq!(e.to_string(), "Could not find version 5 of model m");
    }
}
