//! The signature's inputs, asked of the server itself (gRPC `GetModelMetadata`, or REST
//! `GET /v1/models/{m}/metadata`) so that random inputs match whatever model is deployed
//! without the user restating its shapes.

use std::collections::BTreeMap;

use candle_serving::proto::tensorflow::serving::{GetModelMetadataRequest, ModelSpec, SignatureDefMap};
use candle_serving::proto::tensorflow::{DataType, SignatureDef};
use prost::Message;
use serde_json::Value;

use crate::grpc::Stub;
use crate::http::{self, Conn};
use crate::inputs::InputSpec;

pub(crate) const DEFAULT_SIGNATURE: &str = "serving_default";

pub(crate) async fn grpc_inputs(stub: &Stub, model: &str, signature: Option<&str>) -> Result<(String, Vec<InputSpec>), String> {
    let request = GetModelMetadataRequest {
        model_spec: Some(ModelSpec { name: model.to_string(), ..Default::default() }),
        metadata_field: vec!["signature_def".to_string()],
    };
    let response = stub.clone().get_model_metadata(request).await.map_err(|s| format!("GetModelMetadata: {:?}: {}", s.code(), s.message()))?;
    let any = response.into_inner().metadata.remove("signature_def").ok_or("GetModelMetadata: no signature_def in the response")?;
    let map = SignatureDefMap::decode(any.value.as_slice()).map_err(|e| format!("GetModelMetadata: bad SignatureDefMap: {e}"))?;
    let signatures: BTreeMap<String, SignatureDef> = map.signature_def.into_iter().collect();
    let name = pick(signatures.keys(), signature)?;
    let mut inputs: Vec<InputSpec> = signatures[&name]
        .inputs
        .iter()
        .map(|(key, info)| InputSpec {
            name: key.clone(),
            dtype: DataType::try_from(info.dtype).unwrap_or(DataType::DtInvalid),
            dims: info.tensor_shape.as_ref().filter(|s| !s.unknown_rank).map(|s| s.dim.iter().map(|d| d.size).collect()),
        })
        .collect();
    inputs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((name, inputs))
}

pub(crate) async fn rest_inputs(addr: &str, model: &str, signature: Option<&str>) -> Result<(String, Vec<InputSpec>), String> {
    let path = format!("/v1/models/{model}/metadata");
    let mut conn = Conn::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let response = conn.send(&http::request("GET", addr, &path, b"")).await.map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&response.body);
    if response.status != 200 {
        return Err(format!("GET {path}: HTTP {}: {}", response.status, text.trim()));
    }
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}"))?;
    parse_rest(&json, signature).map_err(|e| format!("GET {path}: {e}"))
}

/// Reads TF Serving's JSON rendering of the metadata: `metadata.signature_def.signature_def`
/// maps signature names to `{inputs: {key: {dtype: "DT_FLOAT", tensor_shape: {dim: [{size: "-1"}]}}}}`
/// (int64 sizes are JSON strings).
fn parse_rest(json: &Value, signature: Option<&str>) -> Result<(String, Vec<InputSpec>), String> {
    let signatures = json
        .pointer("/metadata/signature_def/signature_def")
        .and_then(Value::as_object)
        .ok_or("no metadata.signature_def.signature_def")?;
    let name = pick(signatures.keys(), signature)?;
    let inputs = signatures[&name].get("inputs").and_then(Value::as_object).ok_or("signature without inputs")?;
    let inputs = inputs
        .iter()
        .map(|(key, info)| {
            let dtype_name = info.get("dtype").and_then(Value::as_str).unwrap_or("DT_INVALID");
            let shape = info.get("tensor_shape");
            let unknown = shape.and_then(|s| s.get("unknown_rank")).and_then(Value::as_bool).unwrap_or(shape.is_none());
            let dims = shape
                .and_then(|s| s.get("dim"))
                .and_then(Value::as_array)
                .map(|dims| dims.iter().map(|d| size(d.get("size"))).collect::<Result<Vec<_>, _>>())
                .transpose()?
                .filter(|_| !unknown);
            Ok(InputSpec { name: key.clone(), dtype: DataType::from_str_name(dtype_name).unwrap_or(DataType::DtInvalid), dims })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((name, inputs))
}

fn size(v: Option<&Value>) -> Result<i64, String> {
    match v {
        Some(Value::String(s)) => s.parse().map_err(|_| format!("bad dim size '{s}'")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("bad dim size {n}")),
        None => Ok(0),
        Some(other) => Err(format!("bad dim size {other}")),
    }
}

/// The asked-for signature, else `serving_default`, else the only one.
fn pick<'a>(names: impl Iterator<Item = &'a String>, asked: Option<&str>) -> Result<String, String> {
    let names: Vec<&String> = names.collect();
    let all = || names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
    let wanted = asked.unwrap_or(DEFAULT_SIGNATURE);
    if let Some(n) = names.iter().find(|n| n.as_str() == wanted) {
        return Ok((*n).clone());
    }
    match (asked, names.as_slice()) {
        (Some(asked), _) => Err(format!("no signature '{asked}' (have: {})", all())),
        (None, [only]) => Ok((*only).clone()),
        (None, []) => Err("the model has no signatures".into()),
        (None, _) => Err(format!("several signatures and no serving_default; pick one with --signature (have: {})", all())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rest_metadata() {
        let json: Value = serde_json::from_str(
            r#"{"model_spec":{"name":"m","signature_name":"","version":"1"},"metadata":{"signature_def":{"signature_def":{
            "serving_default":{"inputs":{"image":{"dtype":"DT_FLOAT","tensor_shape":{"dim":[{"size":"-1","name":""},{"size":"28","name":""}],"unknown_rank":false},"name":"image"}},
            "outputs":{},"method_name":"tensorflow/serving/predict","defaults":{}}}}}}"#,
        )
        .expect("json");
        let (name, inputs) = parse_rest(&json, None).expect("inputs");
        assert_eq!(name, "serving_default");
        assert_eq!(inputs, vec![InputSpec { name: "image".into(), dtype: DataType::DtFloat, dims: Some(vec![-1, 28]) }]);
        assert!(parse_rest(&json, Some("other")).is_err());
    }

    #[test]
    fn picks_signatures() {
        let names = ["a".to_string(), "serving_default".to_string()];
        assert_eq!(pick(names.iter(), None).as_deref(), Ok("serving_default"));
        assert_eq!(pick(names.iter(), Some("a")).as_deref(), Ok("a"));
        assert_eq!(pick(names[..1].iter(), None).as_deref(), Ok("a"));
        assert!(pick(["a".to_string(), "b".to_string()].iter(), None).is_err());
    }
}
