//! The execution plan: value slots, steps in topological order, and when each slot dies.
//! Building it is load-time work (constant folding included); running it is the request path.

use std::collections::{HashMap, HashSet};

use candle_core::Tensor;

use crate::engine::{EngineError, LoadError};

use super::ops::{Op, OpError};

struct Step {
    node: String,
    op_type: String,
    op: Box<dyn Op>,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    /// Slots whose last reader is this step; dropping them early bounds peak memory.
    free: Vec<usize>,
}

/// Called after each step with its op type, inputs, outputs and wall time.
type StepObserver<'a> = dyn FnMut(&str, &[Option<&Tensor>], &[Tensor], std::time::Duration) + 'a;

pub(crate) struct Plan {
    /// Initial slot contents: folded constants, `None` for values computed per request.
    template: Vec<Option<Tensor>>,
    steps: Vec<Step>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

impl Plan {
    /// The op of every step that runs per request, in order (constants are folded away).
    #[cfg(test)]
    pub(crate) fn step_ops(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.op_type.as_str()).collect()
    }

    /// Bytes held as constants (what the ops did not absorb at load).
    #[cfg(test)]
    pub(crate) fn constant_bytes(&self) -> usize {
        self.template.iter().flatten().map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum()
    }

    pub(crate) fn input_count(&self) -> usize {
        self.inputs.len()
    }

    pub(crate) fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        self.run_observed(inputs, None)
    }

    /// [`Self::run`], telling `observe` each step's op type and wall time: the per-op profile
    /// behind the README's notes on where a model's time goes (`profile_plan` in the tests).
    #[cfg(test)]
    pub(crate) fn run_profiled(&self, inputs: Vec<Tensor>, observe: &mut StepObserver<'_>) -> Result<Vec<Tensor>, EngineError> {
        self.run_observed(inputs, Some(observe))
    }

    fn run_observed(&self, inputs: Vec<Tensor>, mut observe: Option<&mut StepObserver<'_>>) -> Result<Vec<Tensor>, EngineError> {
        let mut slots = self.template.clone();
        for (&slot, tensor) in self.inputs.iter().zip(inputs) {
            slots[slot] = Some(tensor);
        }
        for step in &self.steps {
            let args: Vec<Option<&Tensor>> =
                step.inputs.iter().map(|i| i.and_then(|i| slots[i].as_ref())).collect();
            let started = observe.is_some().then(std::time::Instant::now);
            let results = step.op.run(&args).map_err(|e| EngineError::Node {
                node: step.node.clone(),
                op: step.op_type.clone(),
                reason: e.to_string(),
            })?;
            if results.len() < step.outputs.len() {
                return Err(EngineError::Internal(format!(
                    "node '{}' ({}) produced {} outputs, expected {}",
                    step.node,
                    step.op_type,
                    results.len(),
                    step.outputs.len()
                )));
            }
            if let (Some(observe), Some(started)) = (observe.as_mut(), started) {
                observe(&step.op_type, &args, &results, started.elapsed());
            }
            for (&slot, tensor) in step.outputs.iter().zip(results) {
                slots[slot] = Some(tensor);
            }
            for &slot in &step.free {
                slots[slot] = None;
            }
        }
        self.outputs
            .iter()
            .map(|&slot| {
                slots[slot]
                    .clone()
                    .ok_or_else(|| EngineError::Internal(format!("graph output slot {slot} was never computed")))
            })
            .collect()
    }
}

/// Accumulates slots and steps while the importer walks the graph in topological order.
#[derive(Default)]
pub(crate) struct PlanBuilder {
    names: HashMap<String, usize>,
    template: Vec<Option<Tensor>>,
    steps: Vec<Step>,
    /// Reads of each value still to come, where the importer counted them ([`Self::expect_reads`]).
    pending_reads: HashMap<String, usize>,
    /// Slots some step reads per request: they stay in the template.
    read_per_request: HashSet<usize>,
}

impl PlanBuilder {
    /// Declares how many nodes will read each value (over-counting is safe). A constant whose
    /// last reader consumed it at load (folded it, or absorbed it in `Op::prepare`) is then
    /// dropped at once: a weight's exported form goes as soon as its packed or folded form exists,
    /// instead of when the whole plan is built.
    pub(crate) fn expect_reads(&mut self, reads: HashMap<String, usize>) {
        self.pending_reads = reads;
    }

    /// Counts one read of `name`, and drops it from the template if that was the last and no
    /// step reads it per request (every read consumed it at load).
    fn count_read(&mut self, name: &str) {
        let Some(count) = self.pending_reads.get_mut(name) else { return };
        *count = count.saturating_sub(1);
        if *count == 0 && let Some(slot) = self.slot(name).filter(|s| !self.read_per_request.contains(s)) {
            self.template[slot] = None;
        }
    }

    pub(crate) fn is_defined(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    fn define(&mut self, name: &str, value: Option<Tensor>) -> usize {
        let slot = self.template.len();
        self.template.push(value);
        self.names.insert(name.to_string(), slot);
        slot
    }

    pub(crate) fn add_constant(&mut self, name: &str, tensor: Tensor) {
        self.define(name, Some(tensor));
    }

    pub(crate) fn add_input(&mut self, name: &str) -> usize {
        self.define(name, None)
    }

    /// The value of `name` if it is known at load (an initializer or a folded result).
    pub(crate) fn constant(&self, name: &str) -> Option<&Tensor> {
        self.slot(name).and_then(|slot| self.template[slot].as_ref())
    }

    pub(crate) fn slot(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }

    /// Adds a node; when every input is already constant the node runs now and its outputs
    /// become constants, so shape arithmetic and weight transposes never run per request.
    pub(crate) fn add_node(
        &mut self,
        node: &str,
        op_type: &str,
        mut op: Box<dyn Op>,
        input_names: &[String],
        output_names: &[String],
    ) -> Result<(), LoadError> {
        let mut inputs = Vec::with_capacity(input_names.len());
        for name in input_names {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            let slot = self.slot(name).ok_or_else(|| {
                LoadError::Invalid(format!("reads '{name}', which no node, initializer or graph input produces"))
            })?;
            inputs.push(Some(slot));
        }
        let constant = inputs.iter().flatten().all(|&s| self.template[s].is_some());
        if constant {
            let args: Vec<Option<&Tensor>> = inputs.iter().map(|i| i.and_then(|i| self.template[i].as_ref())).collect();
            let results = op.run(&args).map_err(|e: OpError| LoadError::Invalid(format!("constant folding failed: {e}")))?;
            for (name, tensor) in output_names.iter().zip(results) {
                if !name.is_empty() {
                    self.define(name, Some(tensor));
                }
            }
            for name in input_names.iter().filter(|n| !n.is_empty()) {
                self.count_read(name);
            }
            return Ok(());
        }
        let known: Vec<Option<&Tensor>> = inputs.iter().map(|i| i.and_then(|i| self.template[i].as_ref())).collect();
        op.prepare(&known).map_err(|e| LoadError::Invalid(format!("preparing weights failed: {e}")))?;
        for (index, name) in input_names.iter().enumerate() {
            let Some(slot) = inputs[index] else { continue };
            if self.template[slot].is_some() && op.absorbed(index) {
                inputs[index] = None;
            } else {
                self.read_per_request.insert(slot);
            }
            self.count_read(name);
        }
        let outputs = output_names
            .iter()
            .map(|name| if name.is_empty() { self.define(&format!("{node}:unused"), None) } else { self.define(name, None) })
            .collect();
        self.steps.push(Step { node: node.to_string(), op_type: op_type.to_string(), op, inputs, outputs, free: Vec::new() });
        Ok(())
    }

    pub(crate) fn finish(mut self, inputs: Vec<usize>, outputs: Vec<usize>) -> Plan {
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        for (index, step) in self.steps.iter().enumerate() {
            for &slot in step.inputs.iter().flatten() {
                last_use.insert(slot, index);
            }
        }
        for (&slot, &index) in &last_use {
            if !outputs.contains(&slot) {
                self.steps[index].free.push(slot);
            }
        }
        // constants no step reads (absorbed by the ops, or never used) are not kept
        for (slot, value) in self.template.iter_mut().enumerate() {
            if !last_use.contains_key(&slot) && !outputs.contains(&slot) {
                *value = None;
            }
        }
        Plan { template: self.template, steps: self.steps, inputs, outputs }
    }
}
