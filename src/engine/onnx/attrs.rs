//! Typed access to node attributes, so op builders state defaults once and errors name the
//! attribute.

use candle_core::{Device, Tensor};

use crate::engine::LoadError;
use crate::proto::onnx::{AttributeProto, GraphProto, NodeProto};

use super::initializer;

/// Everything an op builder may look at: the node, its attributes and the opset in force.
pub(crate) struct NodeCtx<'a> {
    pub(crate) node: &'a NodeProto,
    pub(crate) opset: i64,
    pub(crate) device: &'a Device,
    /// Values of the enclosing scope that the node's subgraphs read by name, in the order they
    /// trail the node's own inputs at run time, each with its value when already constant at
    /// load (those are baked into the body instead and do not trail). Empty for most nodes.
    pub(crate) implicit: &'a [(String, Option<Tensor>)],
}

impl<'a> NodeCtx<'a> {
    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn bad(&self, name: &str, why: &str) -> LoadError {
        LoadError::Invalid(format!("attribute '{name}' {why}"))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub(crate) fn int(&self, name: &str, default: i64) -> i64 {
        self.find(name).map_or(default, |a| a.i)
    }

    pub(crate) fn float(&self, name: &str, default: f32) -> f32 {
        self.find(name).map_or(default, |a| a.f)
    }

    pub(crate) fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.find(name).map(|a| a.ints.clone())
    }

    pub(crate) fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.find(name).map(|a| a.floats.clone())
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Option<Vec<String>>, LoadError> {
        match self.find(name) {
            None => Ok(None),
            Some(a) => a
                .strings
                .iter()
                .map(|s| String::from_utf8(s.clone()).map_err(|_| self.bad(name, "holds a string that is not UTF-8")))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }

    pub(crate) fn string(&self, name: &str, default: &str) -> Result<String, LoadError> {
        match self.find(name) {
            None => Ok(default.to_string()),
            Some(a) => String::from_utf8(a.s.clone()).map_err(|_| self.bad(name, "is not UTF-8")),
        }
    }

    pub(crate) fn tensor(&self, name: &str) -> Result<Option<Tensor>, LoadError> {
        match self.find(name).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => initializer::to_tensor(t, self.device).map(Some),
        }
    }

    /// A graph-valued attribute (a Loop, Scan or If body).
    pub(crate) fn graph(&self, name: &str) -> Result<&'a GraphProto, LoadError> {
        self.find(name).and_then(|a| a.g.as_ref()).ok_or_else(|| self.bad(name, "is missing (a graph is required)"))
    }

    /// A non-negative attribute list, for sizes such as `kernel_shape` and `strides`.
    pub(crate) fn sizes(&self, name: &str) -> Result<Option<Vec<usize>>, LoadError> {
        match self.ints(name) {
            None => Ok(None),
            Some(v) => v
                .into_iter()
                .map(|x| usize::try_from(x).map_err(|_| self.bad(name, &format!("has negative value {x}"))))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }
}
