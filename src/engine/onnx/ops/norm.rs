//! BatchNormalization (inference) and LRN.

use candle_core::Tensor;

use crate::engine::LoadError;
use crate::engine::kernels;
use crate::engine::onnx::attrs::NodeCtx;

use super::{Builder, Op, OpError, OpResult, required};

pub(super) const OPS: &[(&str, Builder)] = &[("BatchNormalization", batch_norm), ("LRN", lrn)];

struct BatchNorm {
    epsilon: f64,
    /// scale / sqrt(var + eps) and B - mean * that, in the parameters' own shape, when all four
    /// parameters are constants.
    folded: Option<(Tensor, Tensor)>,
}

impl BatchNorm {
    fn fold(&self, scale: &Tensor, bias: &Tensor, mean: &Tensor, var: &Tensor) -> Result<(Tensor, Tensor), OpError> {
        let a = scale.broadcast_div(&(var.affine(1.0, self.epsilon)?.sqrt()?))?;
        let b = (bias - mean.mul(&a)?)?;
        Ok((a, b))
    }
}

impl Op for BatchNorm {
    /// Constant statistics (the usual case) fold once here instead of on every request.
    fn prepare(&mut self, constants: &[Option<&Tensor>]) -> Result<(), OpError> {
        if let [_, Some(scale), Some(bias), Some(mean), Some(var), ..] = constants && [bias, mean, var].iter().all(|p| p.dims() == scale.dims()) {
            self.folded = self.fold(scale, bias, mean, var).ok();
        }
        Ok(())
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        let scale = required(inputs, 1, "scale")?;
        let bias = required(inputs, 2, "B")?;
        let mean = required(inputs, 3, "input_mean")?;
        let var = required(inputs, 4, "input_var")?;
        if x.rank() < 2 {
            return Err(OpError::Invalid(format!("X must be [N, C, ...], got {:?}", x.dims())));
        }
        let c = x.dims()[1];
        // Per-channel parameters are [C]; the pre-opset-9 spatial=0 form is [C, D1, ...].
        let mut shape = vec![1];
        let params = [scale, bias, mean, var];
        for p in params {
            if p.dims() != scale.dims() || p.dims().first() != Some(&c) || p.rank() > x.rank() - 1 {
                return Err(OpError::Invalid(format!(
                    "scale, B, mean and var must share a [C, ...] shape with C = {c}; got {:?}, {:?}, {:?}, {:?}",
                    scale.dims(),
                    bias.dims(),
                    mean.dims(),
                    var.dims()
                )));
            }
        }
        shape.extend(scale.dims());
        shape.resize(x.rank(), 1);
        let (a, b) = match &self.folded {
            Some(folded) => folded.clone(),
            None => self.fold(scale, bias, mean, var)?,
        };
        let a = a.reshape(shape.as_slice())?.to_dtype(x.dtype())?;
        let b = b.reshape(shape.as_slice())?.to_dtype(x.dtype())?;
        Ok(vec![x.broadcast_mul(&a)?.broadcast_add(&b)?])
    }
}

fn batch_norm(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    if ctx.int("training_mode", 0) != 0 {
        return Err(LoadError::Invalid(
            "attribute 'training_mode' = 1 is not supported: the engine runs BatchNormalization in inference mode only".into(),
        ));
    }
    // Before opset 14 training is signalled by asking for the running statistics outputs.
    if ctx.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(LoadError::Invalid(
            "BatchNormalization's training outputs (mean, var, saved statistics) are not supported: inference mode only".into(),
        ));
    }
    Ok(Box::new(BatchNorm { epsilon: f64::from(ctx.float("epsilon", 1e-5)), folded: None }))
}

struct Lrn(kernels::lrn::Lrn);

impl Op for Lrn {
    /// y = x / (bias + alpha / size * sum of x^2 over the `size` channels around c)^beta, the
    /// window running from c - floor((size-1)/2) to c + ceil((size-1)/2).
    fn run(&self, inputs: &[Option<&Tensor>]) -> OpResult {
        let x = required(inputs, 0, "X")?;
        if x.rank() < 3 {
            return Err(OpError::Invalid(format!("LRN needs X as [N, C, spatial...], got {:?}", x.dims())));
        }
        let c = x.dims()[1];
        let kernels::lrn::Lrn { alpha, beta, bias, size } = self.0;
        let before = (size - 1) / 2;
        let after = size - 1 - before;
        let squares = x.sqr()?.pad_with_zeros(1, before, after)?;
        let mut sum = squares.narrow(1, 0, c)?;
        for j in 1..size {
            sum = (sum + squares.narrow(1, j, c)?)?;
        }
        let denominator = sum.affine(f64::from(alpha) / size as f64, f64::from(bias))?.powf(f64::from(beta))?;
        Ok(vec![x.div(&denominator)?])
    }
}

fn lrn(ctx: &NodeCtx<'_>) -> Result<Box<dyn Op>, LoadError> {
    Ok(Box::new(Lrn(lrn_params(ctx)?)))
}

/// LRN's attributes, shared with the NHWC op the layout pass makes of it.
pub(super) fn lrn_params(ctx: &NodeCtx<'_>) -> Result<kernels::lrn::Lrn, LoadError> {
    let size = ctx.int("size", 0);
    if size < 1 {
        return Err(LoadError::Invalid(format!("attribute 'size' is required and must be >= 1, got {size}")));
    }
    Ok(kernels::lrn::Lrn { alpha: ctx.float("alpha", 1e-4), beta: ctx.float("beta", 0.75), bias: ctx.float("bias", 1.0), size: size as usize })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use crate::engine::onnx::attrs::NodeCtx;
    use crate::proto::onnx::NodeProto;

    use super::super::lookup;

    /// Statistics folded once at load give the same answer as folding them per request.
    #[test]
    fn constant_statistics_fold_at_prepare_with_the_same_result() {
        let node = NodeProto { op_type: "BatchNormalization".into(), output: vec!["y".into()], ..Default::default() };
        let ctx = NodeCtx { node: &node, opset: 15, device: &Device::Cpu, implicit: &[] };
        let build = lookup("BatchNormalization").expect("registered");
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 24.0, &dev).and_then(|t| t.reshape((2, 3, 2, 2))).expect("x");
        let params: Vec<Tensor> = [[1.0f32, 2.0, 0.5], [0.1, -0.2, 0.3], [1.0, 2.0, 3.0], [4.0, 1.0, 0.25]]
            .iter()
            .map(|v| Tensor::new(v, &dev).expect("param"))
            .collect();
        let inputs: Vec<Option<&Tensor>> = std::iter::once(Some(&x)).chain(params.iter().map(Some)).collect();
        let per_request = build(&ctx).expect("build").run(&inputs).expect("run");
        let mut prepared = build(&ctx).expect("build");
        let constants: Vec<Option<&Tensor>> = std::iter::once(None).chain(params.iter().map(Some)).collect();
        prepared.prepare(&constants).expect("prepare");
        let folded = prepared.run(&inputs).expect("run");
        let a = per_request[0].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("a");
        let b = folded[0].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("b");
        assert_eq!(a, b);
        // channel 1 of image 0: (4 - 2) * 2 / sqrt(1 + 1e-5) - 0.2
        assert!((a[4] - (2.0 * 2.0 / (1.0f32 + 1e-5).sqrt() - 0.2)).abs() < 1e-5, "{}", a[4]);
    }
}
