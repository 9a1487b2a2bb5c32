//! REST `:classify` and `:regress`: `{"signature_name", "context", "examples": [...]}` with
//! features as JSON numbers (an integer is an int64 feature, any other number a float one),
//! strings and `{"b64": ...}` (bytes), or lists of those; answers TF Serving's
//! `{"results": [[["label", score], ...], ...]}` and `{"results": [value, ...]}`.

use base64::Engine;

use crate::proto::tensorflow::{BytesList, Example, Feature, Features, FloatList, Int64List, feature};
use crate::repository::VersionRequest;
use crate::request::Request;
use crate::servable::{Examples, InferenceOutput, Method};
use crate::transport::json::{Value, Writer, preview, write_f32};

use super::predict::{document, signature_name};
use super::reply::RestError;
use super::tensor::is_base64_object;

pub(super) async fn run(
    request: &mut Request<'_>,
    version: &VersionRequest,
    method: Method,
    body: &[u8],
    deadline: Option<std::time::Instant>,
) -> Result<String, RestError> {
    let doc = document(body)?;
    let signature = signature_name(&doc)?;
    let context = doc.get("context").map(|c| example(c, "context")).transpose()?;
    let examples = match doc.get("examples") {
        Some(Value::Array(items)) => items.iter().map(|e| example(e, "examples")).collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(RestError::invalid(format!("'examples' must be an array, got {}", preview(other)))),
        None => return Err(RestError::invalid("'examples' is missing: a :classify or :regress body is {\"examples\": [...]}")),
    };
    let input = Examples { examples: &examples, context: context.as_ref() };
    if input.is_empty() {
        return Err(RestError::from(crate::servable::RequestError::from(crate::example::ExampleError::Empty)));
    }
    let servable = request.resolve(version)?;
    request.count_examples(input.len());
    let outcome = servable.infer_examples(method, signature, input, deadline).await.map_err(crate::error::ServingError::from)?;
    request.ran(outcome.timeline);
    let mut w = Writer::with_capacity(64 * examples.len());
    w.begin_object().key("results").begin_array();
    match outcome.output {
        InferenceOutput::Classifications(rows) => {
            for classes in rows {
                w.begin_array();
                for (label, score) in classes {
                    w.begin_array().string(&label).raw(|out| write_f32(out, score)).end_array();
                }
                w.end_array();
            }
        }
        InferenceOutput::Regressions(values) => {
            for value in values {
                w.raw(|out| write_f32(out, value));
            }
        }
    }
    w.end_array().end_object();
    Ok(w.finish())
}

/// A JSON object of features as a tf.Example.
fn example(value: &Value<'_>, what: &str) -> Result<Example, RestError> {
    let Value::Object(members) = value else {
        return Err(RestError::invalid(format!("an entry of '{what}' must be an object of features, got {}", preview(value))));
    };
    let mut features = Features::default();
    for (key, value) in members {
        features.feature.insert(key.to_string(), feature_of(key, value)?);
    }
    Ok(Example { features: Some(features) })
}

/// One feature: a scalar or a list, all of one kind.
fn feature_of(key: &str, value: &Value<'_>) -> Result<Feature, RestError> {
    let items: Vec<&Value<'_>> = match value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let mixed = || RestError::invalid(format!("feature '{key}': all values of a feature must be of one type (numbers, integers or strings): {}", preview(value)));
    let kind = match items.first() {
        None => feature::Kind::FloatList(FloatList::default()),
        Some(Value::Int(_) | Value::Uint(_)) if items.iter().all(|v| matches!(v, Value::Int(_))) => {
            feature::Kind::Int64List(Int64List { value: items.iter().filter_map(|v| if let Value::Int(i) = v { Some(*i) } else { None }).collect() })
        }
        Some(Value::Int(_) | Value::Float(_)) => {
            let floats = items.iter().map(|v| v.as_f64().map(|f| f as f32)).collect::<Option<Vec<_>>>().ok_or_else(mixed)?;
            feature::Kind::FloatList(FloatList { value: floats })
        }
        Some(Value::String(_)) | Some(Value::Object(_)) => {
            let bytes = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.as_bytes().to_vec()),
                    b64 if is_base64_object(b64) => {
                        let encoded = b64.get("b64").and_then(Value::as_str).unwrap_or_default();
                        base64::engine::general_purpose::STANDARD
                            .decode(encoded)
                            .map_err(|e| RestError::invalid(format!("feature '{key}': 'b64' is not base64: {e}")))
                    }
                    _ => Err(mixed()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            feature::Kind::BytesList(BytesList { value: bytes })
        }
        Some(other) => return Err(RestError::invalid(format!("feature '{key}': {} is not a feature value", preview(other)))),
    };
    Ok(Feature { kind: Some(kind) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Example {
        example(&crate::transport::json::parse(text.as_bytes()).expect("json"), "examples").expect("example")
    }

    #[test]
    fn json_features_become_example_features() {
        let e = parsed(r#"{"x": 2.0, "n": [1, 2], "f": [1, 2.5], "s": "a", "b": {"b64": "AAE="}}"#);
        let f = |k: &str| e.features.as_ref().expect("features").feature[k].kind.clone();
        assert_eq!(f("x"), Some(feature::Kind::FloatList(FloatList { value: vec![2.0] })));
        assert_eq!(f("n"), Some(feature::Kind::Int64List(Int64List { value: vec![1, 2] })));
        assert_eq!(f("f"), Some(feature::Kind::FloatList(FloatList { value: vec![1.0, 2.5] })));
        assert_eq!(f("s"), Some(feature::Kind::BytesList(BytesList { value: vec![b"a".to_vec()] })));
        assert_eq!(f("b"), Some(feature::Kind::BytesList(BytesList { value: vec![vec![0, 1]] })));
        let bad = example(&crate::transport::json::parse(br#"{"x": [1.0, "a"]}"#).expect("json"), "examples").expect_err("mixed");
        assert!(bad.to_string().contains("feature 'x'"), "{bad}");
    }
}
