//! The tf.Example side of Classify and Regress signatures: `ParseExample(V2)` becomes the
//! graph's inputs (one per dense feature, decoded from the request's Examples before the engine
//! runs, see `crate::example`), and a classifier's constant class labels (a string Const,
//! expanded and tiled over the examples) are kept as a row to repeat per example rather than
//! computed, since the engine has no strings.

use crate::example::{DenseFeature, ExampleInput};
use crate::proto::tensorflow::attr_value::Value as AttrValue;
use crate::proto::tensorflow::{DataType, NodeDef};
use crate::tensor::{DType, TensorData};

use super::{Builder, SavedModelError, Scope, Value};

impl<'m> Builder<'m> {
    /// Nodes whose inputs must not all be translated first: ParseExample (its keys are string
    /// constants), string constants, and the ops that expand labels over the examples. `None`
    /// for every other node.
    pub(super) fn string_node(&mut self, scope: &mut Scope<'m>, node: &'m NodeDef) -> Option<Result<Vec<Value>, SavedModelError>> {
        let label = scope.label.clone();
        let unsupported = move |what: String| SavedModelError::Unsupported(format!("{label}, node {:?} ({}): {what}", node.name, node.op));
        match node.op.as_str() {
            "Const" => {
                let Some(AttrValue::Tensor(t)) = node.attr.get("value").and_then(|a| a.value.as_ref()) else { return None };
                (t.dtype == DataType::DtString as i32).then(|| {
                    let row = t.string_val.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect();
                    Ok(vec![Value::Strings { row, per_example: false }])
                })
            }
            "ParseExample" | "ParseExampleV2" => Some(self.parse_example(scope, node).map_err(unsupported)),
            "ExpandDims" | "Tile" | "Identity" => {
                let first = node.input.first()?;
                match self.value(scope, first) {
                    Ok(Value::Strings { row, per_example }) => Some(Ok(vec![Value::Strings { row, per_example: per_example || node.op == "Tile" }])),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn parse_example(&mut self, scope: &mut Scope<'m>, node: &'m NodeDef) -> Result<Vec<Value>, String> {
        let attr = |key: &str| node.attr.get(key).and_then(|a| a.value.as_ref());
        let int = |key: &str| match attr(key) {
            Some(AttrValue::I(i)) => *i,
            _ => 0,
        };
        let inputs: Vec<&'m String> = node.input.iter().filter(|i| !i.starts_with('^')).collect();
        let key = match self.value(scope, inputs.first().ok_or("has no input")?).map_err(|e| e.to_string())? {
            Value::Examples(key) => key,
            _ => return Err("parses a tensor that is not the signature's serialized tf.Examples input".into()),
        };
        let v2 = node.op == "ParseExampleV2";
        let sparse = if v2 { int("num_sparse") } else { int("Nsparse") };
        let ragged = matches!(attr("ragged_value_types"), Some(AttrValue::List(l)) if !l.r#type.is_empty());
        if sparse > 0 || ragged {
            return Err("sparse and ragged features are not supported; only dense (FixedLenFeature) ones are".into());
        }
        let types = match attr("Tdense") {
            Some(AttrValue::List(l)) => l.r#type.clone(),
            _ => Vec::new(),
        };
        let shapes = match attr("dense_shapes") {
            Some(AttrValue::List(l)) => l.shape.clone(),
            _ => Vec::new(),
        };
        // V1: serialized, names, sparse keys (none), one dense key each, defaults.
        // V2: serialized, names, sparse keys, dense keys, ragged keys (1-D), defaults.
        let (keys, defaults): (Vec<String>, Vec<&String>) = if v2 {
            (self.strings(scope, inputs.get(3).ok_or("has no dense keys")?)?, inputs.iter().skip(5).copied().collect())
        } else {
            let n = types.len();
            let mut keys = Vec::with_capacity(n);
            for reference in inputs.iter().skip(2).take(n) {
                keys.extend(self.strings(scope, reference)?);
            }
            (keys, inputs.iter().skip(2 + n).copied().collect())
        };
        if keys.len() != types.len() || defaults.len() != types.len() || shapes.len() != types.len() {
            return Err(format!("{} dense keys, {} types, {} shapes and {} defaults do not match", keys.len(), types.len(), shapes.len(), defaults.len()));
        }
        let mut features = Vec::with_capacity(keys.len());
        let mut outputs = Vec::with_capacity(keys.len());
        for (i, feature) in keys.iter().enumerate() {
            let dtype = match DataType::try_from(types[i]) {
                Ok(DataType::DtFloat) => DType::F32,
                Ok(DataType::DtInt64) => DType::I64,
                _ => return Err(format!("feature {feature:?}: only float and int64 features are supported")),
            };
            let shape = shapes[i].dim.iter().map(|d| usize::try_from(d.size).ok()).collect::<Option<Vec<_>>>();
            let shape = shape.ok_or_else(|| format!("feature {feature:?}: a variable-length dense shape is not supported"))?;
            let default = self.value(scope, defaults[i]).map_err(|e| e.to_string())?;
            let default = self.known(&default).ok_or_else(|| format!("feature {feature:?}: its default is not a constant"))?;
            let default = (!default.data().is_empty()).then(|| default.into_parts().1).map(|d| match d {
                TensorData::F64(v) => TensorData::F32(v.into_iter().map(|x| x as f32).collect()),
                other => other,
            });
            let input = format!("{key}/{feature}");
            outputs.push(Value::Tensor(input.clone()));
            features.push(DenseFeature { key: feature.clone(), input, dtype, shape, default });
        }
        if self.examples.as_ref().is_some_and(|e| e.key != key || e.features != features) {
            return Err("a second, different ParseExample of the examples is not supported".into());
        }
        self.examples = Some(ExampleInput { key, features });
        Ok(outputs)
    }

    /// The values of a string constant `reference` reads (through Identity nodes).
    fn strings(&mut self, scope: &mut Scope<'m>, reference: &str) -> Result<Vec<String>, String> {
        match self.value(scope, reference).map_err(|e| e.to_string())? {
            Value::Strings { row, .. } => Ok(row),
            other => Err(format!("{reference:?} is not a string constant ({other:?})")),
        }
    }
}
