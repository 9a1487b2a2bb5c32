//! `POST …:predict`: the JSON body (row `instances` or columnar `inputs`) to a
//! [`PredictCall`], the shared Predict flow, and the outputs back to `predictions` / `outputs`
//! JSON, with TF's texts for REST-specific mistakes (json_tensor.cc).

use std::collections::{BTreeSet, HashMap};

use half::{bf16, f16};

use crate::repository::VersionRequest;
use crate::request::Request;
use crate::servable::{PredictCall, Signature, bind_inputs};
use crate::tensor::{HostTensor, TensorData};

use crate::transport::json::{self, Value, Writer, preview, write_f32, write_f64};
use super::reply::RestError;
use super::tensor::{JsonTensor, is_named_object};

/// Which layout the request used; the response mirrors it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Row,
    Columnar,
}

/// Runs one predict request. The version that answered is recorded on `request` as soon as
/// it is known, so the request's metrics carry it even when a later step fails.
pub(super) async fn run(
    request: &mut Request<'_>,
    version: &VersionRequest,
    body: &[u8],
    deadline: Option<std::time::Instant>,
) -> Result<String, RestError> {
    let doc = document(body)?;
    let signature_name = signature_name(&doc)?;
    // The signature decides how rows map to inputs and which dtype each value must have, so
    // resolve first (TF does the same) and run the call on that same servable.
    let servable = request.resolve(version)?;
    let signature = servable.signature(signature_name)?;
    let (format, inputs) = request_tensors(&doc, signature)?;
    let call = PredictCall { signature_name: signature_name.to_string(), inputs, output_filter: Vec::new(), deadline };
    let outcome = request.predict(&servable, call).await?;
    write_outputs(format, &outcome.outputs)
}

/// Parses a Predict body and builds its input tensors for `signature`, checked and converted
/// exactly as a request would be, without a model to run them. The body's `signature_name` is
/// validated but not used to pick `signature`. This is the REST decoding step the fuzz target
/// drives; `run` goes through the same helpers.
pub fn decode_inputs(body: &[u8], signature: &Signature) -> Result<Vec<HostTensor>, RestError> {
    let doc = document(body)?;
    signature_name(&doc)?;
    let (_, inputs) = request_tensors(&doc, signature)?;
    Ok(bind_inputs(signature, inputs)?)
}

/// The body as a JSON object.
pub(super) fn document(body: &[u8]) -> Result<Value<'_>, RestError> {
    let doc = json::parse(body).map_err(|e| RestError::invalid(e.to_string()))?;
    if !matches!(doc, Value::Object(_)) {
        return Err(RestError::invalid(format!("JSON Value: {} Is not object", preview(&doc))));
    }
    Ok(doc)
}

/// `signature_name`, empty when absent.
pub(super) fn signature_name<'d>(doc: &'d Value<'_>) -> Result<&'d str, RestError> {
    match doc.get("signature_name") {
        None => Ok(""),
        Some(Value::String(name)) => Ok(name),
        Some(_) => Err(RestError::invalid(format!(
            "JSON Value: {} not formatted correctly. 'signature_name' key must be a string value.",
            preview(doc)
        ))),
    }
}

type Inputs<'v, 'a> = HashMap<String, JsonTensor<'v, 'a>>;

fn request_tensors<'v, 'a>(doc: &'v Value<'a>, signature: &Signature) -> Result<(Format, Inputs<'v, 'a>), RestError> {
    if signature.inputs.is_empty() {
        return Err(RestError::invalid(format!("Failed to get input map for signature: {}", signature.name)));
    }
    match (doc.get("instances"), doc.get("inputs")) {
        (Some(_), Some(_)) => Err(RestError::invalid(format!(
            "JSON Value: {} Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
            preview(doc)
        ))),
        (Some(instances), None) => Ok((Format::Row, rows(doc, instances, signature)?)),
        (None, Some(inputs)) => Ok((Format::Columnar, columns(inputs, signature)?)),
        (None, None) => Err(RestError::invalid("Missing 'inputs' or 'instances' key")),
    }
}

/// Row format: one element per instance; objects when the signature has several inputs.
fn rows<'v, 'a>(doc: &Value<'_>, instances: &'v Value<'a>, signature: &Signature) -> Result<Inputs<'v, 'a>, RestError> {
    let Value::Array(items) = instances else {
        return Err(RestError::invalid(format!("JSON Value: {} Expecting 'instances' to be a list/array", preview(doc))));
    };
    let Some(first) = items.first() else {
        return Err(RestError::invalid(format!("JSON Value: {} No values in 'instances' array", preview(doc))));
    };
    let named = is_named_object(first);
    if !named && signature.inputs.len() > 1 {
        return Err(RestError::invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per tensorinfo_map",
        ));
    }
    if !named {
        if let Some(index) = items.iter().position(is_named_object) {
            return Err(RestError::invalid(format!("Expecting value/list but got object at item {index} of input list")));
        }
        let key = signature.inputs[0].key.clone();
        return Ok(HashMap::from([(key, JsonTensor::Rows { rows: items.iter().collect(), named: false })]));
    }
    let expected: BTreeSet<&str> = signature.inputs.iter().map(|s| s.key.as_str()).collect();
    for (index, item) in items.iter().enumerate() {
        let Value::Object(members) = item else {
            return Err(RestError::invalid(format!("Expecting object but got list at item {index} of input list")));
        };
        if !is_named_object(item) {
            return Err(RestError::invalid(format!("Expecting object but got list at item {index} of input list")));
        }
        let keys: BTreeSet<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        if keys != expected || keys.len() != members.len() {
            return Err(RestError::invalid(format!(
                "Failed to process element: {index} of 'instances' list. JSON object: {} keys must be equal to: {}",
                preview(item),
                expected.iter().copied().collect::<Vec<_>>().join(",")
            )));
        }
    }
    Ok(signature
        .inputs
        .iter()
        .map(|spec| {
            let rows = items.iter().filter_map(|item| item.get(&spec.key)).collect();
            (spec.key.clone(), JsonTensor::Rows { rows, named: true })
        })
        .collect())
}

/// Columnar format: the value itself (one input) or an object of named values. As in TF,
/// names the signature does not have are ignored.
fn columns<'v, 'a>(inputs: &'v Value<'a>, signature: &Signature) -> Result<Inputs<'v, 'a>, RestError> {
    if !is_named_object(inputs) {
        if signature.inputs.len() > 1 {
            return Err(RestError::invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map",
            ));
        }
        let key = signature.inputs[0].key.clone();
        return Ok(HashMap::from([(key, JsonTensor::Whole(inputs))]));
    }
    signature
        .inputs
        .iter()
        .map(|spec| {
            let value = inputs
                .get(&spec.key)
                .ok_or_else(|| RestError::invalid(format!("Missing named input: {} in 'inputs' object.", spec.key)))?;
            Ok((spec.key.clone(), JsonTensor::Whole(value)))
        })
        .collect()
}

fn write_outputs(format: Format, outputs: &[(String, HostTensor)]) -> Result<String, RestError> {
    if outputs.is_empty() {
        return Err(RestError::invalid("Cannot convert empty tensor map to JSON"));
    }
    let values: usize = outputs.iter().map(|(_, t)| t.data().len()).sum();
    let mut w = Writer::with_capacity(64 + values.saturating_mul(12));
    let several = outputs.len() > 1;
    match format {
        Format::Columnar => {
            w.begin_object().key("outputs");
            if several {
                w.begin_object();
            }
            for (name, tensor) in outputs {
                if several {
                    w.key(name);
                }
                w.raw(|out| write_tensor(out, tensor, None));
            }
            if several {
                w.end_object();
            }
            w.end_object();
        }
        Format::Row => {
            let batch = batch_size(outputs)?;
            w.begin_object().key("predictions").begin_array();
            for row in 0..batch {
                if several {
                    w.begin_object();
                }
                for (name, tensor) in outputs {
                    if several {
                        w.key(name);
                    }
                    w.raw(|out| write_tensor(out, tensor, Some(row)));
                }
                if several {
                    w.end_object();
                }
            }
            w.end_array().end_object();
        }
    }
    Ok(w.finish())
}

/// Row responses split every output along dim 0, so all of them need one and it must agree.
fn batch_size(outputs: &[(String, HostTensor)]) -> Result<usize, RestError> {
    let mut batch = None;
    for (name, tensor) in outputs {
        let Some(&size) = tensor.shape().first() else {
            return Err(RestError::invalid(format!("Tensor name: {name} has no shape information ")));
        };
        match batch {
            Some(expected) if expected != size => {
                return Err(RestError::invalid(format!(
                    "Tensor name: {name} has inconsistent batch size: {size} expecting: {expected}"
                )));
            }
            _ => batch = Some(size),
        }
    }
    Ok(batch.unwrap_or(0))
}

/// Writes a whole tensor, or one row of it (dim 0 removed), as nested lists.
fn write_tensor(out: &mut String, tensor: &HostTensor, row: Option<usize>) {
    let shape = tensor.shape();
    let (dims, range) = match row {
        None => (shape, 0..tensor.data().len()),
        Some(r) => {
            let dims = shape.get(1..).unwrap_or(&[]);
            let stride = dims.iter().product::<usize>();
            (dims, r * stride..(r + 1) * stride)
        }
    };
    match tensor.data() {
        TensorData::F32(v) => nested(out, slice(v, range), dims, &|o, x| write_f32(o, x)),
        TensorData::F64(v) => nested(out, slice(v, range), dims, &|o, x| write_f64(o, x)),
        // TF widens half to float before printing.
        TensorData::F16(v) => nested(out, slice(v, range), dims, &|o, x: f16| write_f32(o, x.to_f32())),
        TensorData::BF16(v) => nested(out, slice(v, range), dims, &|o, x: bf16| write_f32(o, x.to_f32())),
        TensorData::I8(v) => nested(out, slice(v, range), dims, &write_int),
        TensorData::I16(v) => nested(out, slice(v, range), dims, &write_int),
        TensorData::I32(v) => nested(out, slice(v, range), dims, &write_int),
        TensorData::I64(v) => nested(out, slice(v, range), dims, &write_int),
        TensorData::U8(v) => nested(out, slice(v, range), dims, &write_int),
        TensorData::U16(v) => nested(out, slice(v, range), dims, &write_int),
        TensorData::U32(v) => nested(out, slice(v, range), dims, &write_int),
        TensorData::U64(v) => nested(out, slice(v, range), dims, &write_int),
        TensorData::Bool(v) => nested(out, slice(v, range), dims, &|o, b: bool| o.push_str(if b { "true" } else { "false" })),
    }
}

fn slice<T>(values: &[T], range: std::ops::Range<usize>) -> &[T] {
    values.get(range).unwrap_or(&[])
}

fn write_int<T: std::fmt::Display>(out: &mut String, v: T) {
    use std::fmt::Write as _;
    let _ = write!(out, "{v}");
}

/// Row-major `values` as nested JSON lists of `dims`; a rank-0 tensor is its bare value.
fn nested<T: Copy>(out: &mut String, values: &[T], dims: &[usize], put: &dyn Fn(&mut String, T)) {
    let Some((&n, inner)) = dims.split_first() else {
        match values.first() {
            Some(&v) => put(out, v),
            None => out.push_str("null"),
        }
        return;
    };
    let stride = inner.iter().product::<usize>();
    out.push('[');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let chunk = values.get(i * stride..(i + 1) * stride).unwrap_or(&[]);
        if inner.is_empty() {
            match chunk.first() {
                Some(&v) => put(out, v),
                None => out.push_str("null"),
            }
        } else {
            nested(out, chunk, inner, put);
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DType, Dim, TensorSpec};

    fn t(shape: &[usize], v: Vec<f32>) -> HostTensor {
        HostTensor::new(shape.to_vec(), TensorData::F32(v)).expect("tensor")
    }

    fn signature(inputs: &[&str]) -> Signature {
        let spec = |k: &str| TensorSpec { key: k.into(), dtype: DType::F32, shape: Some(vec![Dim::Dynamic, Dim::Fixed(2)]) };
        Signature {
            name: "serving_default".into(),
            method_name: String::new(),
            inputs: inputs.iter().map(|k| spec(k)).collect(),
            outputs: vec![spec("y")],
        }
    }

    fn request_error(body: &str, inputs: &[&str]) -> String {
        let doc = json::parse(body.as_bytes()).expect("json");
        match request_tensors(&doc, &signature(inputs)) {
            Ok(_) => panic!("expected an error for {body}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn row_responses() {
        let one = [("y".to_string(), t(&[2, 2], vec![3.0, 0.5, f32::NAN, f32::INFINITY]))];
        assert_eq!(write_outputs(Format::Row, &one).expect("row"), r#"{"predictions":[[3.0,0.5],[NaN,Infinity]]}"#);
        let two = [("a".to_string(), t(&[2], vec![1.0, 2.0])), ("b".to_string(), t(&[2, 1], vec![-1e-7, 1e7]))];
        assert_eq!(
            write_outputs(Format::Row, &two).expect("rows"),
            r#"{"predictions":[{"a":1.0,"b":[-1e-07]},{"a":2.0,"b":[1e+07]}]}"#
        );
        let bad = [("a".to_string(), t(&[2], vec![1.0, 2.0])), ("b".to_string(), t(&[3], vec![0.0; 3]))];
        assert_eq!(
            write_outputs(Format::Row, &bad).expect_err("batch").to_string(),
            "Tensor name: b has inconsistent batch size: 3 expecting: 2"
        );
        let scalar = [("s".to_string(), t(&[], vec![1.0]))];
        assert!(write_outputs(Format::Row, &scalar).expect_err("scalar").to_string().contains("has no shape information"));
    }

    #[test]
    fn columnar_responses() {
        let one = [("y".to_string(), t(&[1, 2], vec![1.0, 2.0]))];
        assert_eq!(write_outputs(Format::Columnar, &one).expect("one"), r#"{"outputs":[[1.0,2.0]]}"#);
        let ints = HostTensor::new(vec![3], TensorData::I64(vec![-1, 0, 7])).expect("ints");
        let bools = HostTensor::new(vec![], TensorData::Bool(vec![true])).expect("bool");
        let empty = t(&[0, 2], vec![]);
        let several = [("i".to_string(), ints), ("b".to_string(), bools), ("e".to_string(), empty)];
        assert_eq!(write_outputs(Format::Columnar, &several).expect("several"), r#"{"outputs":{"i":[-1,0,7],"b":true,"e":[]}}"#);
    }

    #[test]
    fn request_layout_errors() {
        assert_eq!(
            request_error(r#"{"instances": [], "inputs": []}"#, &["x"]),
            r#"JSON Value: {"instances":[],"inputs":[]} Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"#
        );
        assert_eq!(request_error(r#"{"signature_name": "a"}"#, &["x"]), "Missing 'inputs' or 'instances' key");
        assert!(request_error(r#"{"instances": []}"#, &["x"]).ends_with("No values in 'instances' array"));
        assert!(request_error(r#"{"instances": 3}"#, &["x"]).ends_with("Expecting 'instances' to be a list/array"));
        assert!(request_error(r#"{"instances": [[1, 2]]}"#, &["a", "b"]).starts_with("instances is a plain list"));
        assert_eq!(
            request_error(r#"{"instances": [[1, 2], {"x": [1, 2]}]}"#, &["x"]),
            "Expecting value/list but got object at item 1 of input list"
        );
        assert_eq!(
            request_error(r#"{"instances": [{"a": [1, 2], "b": [1, 2]}, {"a": [1, 2]}]}"#, &["a", "b"]),
            r#"Failed to process element: 1 of 'instances' list. JSON object: {"a":[1,2]} keys must be equal to: a,b"#
        );
        assert!(request_error(r#"{"inputs": [[1, 2]]}"#, &["a", "b"]).starts_with("inputs is a plain value/list"));
        assert_eq!(request_error(r#"{"inputs": {"a": [[1, 2]]}}"#, &["a", "b"]), "Missing named input: b in 'inputs' object.");
    }

    #[test]
    fn named_rows_split_per_input() {
        let doc = json::parse(br#"{"instances": [{"a": [1, 2], "b": [3, 4]}, {"b": [7, 8], "a": [5, 6]}]}"#).expect("json");
        let (format, inputs) = request_tensors(&doc, &signature(&["a", "b"])).expect("inputs");
        assert_eq!(format, Format::Row);
        let JsonTensor::Rows { rows, named: true } = &inputs["b"] else { panic!("rows") };
        assert_eq!(rows.iter().map(|v| v.to_string()).collect::<Vec<_>>(), ["[3,4]", "[7,8]"]);
    }
}
