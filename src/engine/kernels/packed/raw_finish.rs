//! The epilogue as the SIMD kernels take it: raw pointers (null for an absent operand) and the
//! part of the activation they apply in registers. Sigmoid and tanh need `exp`, are rare behind
//! a GEMM, and run on the stored tile afterwards through the scalar activation code.
#![allow(unsafe_code)]

use super::Strip;
use crate::engine::kernels::Activation;

/// The activations a kernel applies to its accumulators before storing them.
#[derive(Clone, Copy)]
pub(super) enum InRegisters {
    None,
    Relu,
    LeakyRelu(f32),
    Clip(f32, f32),
}

/// Epilogue inputs as the kernels read them: null pointers for absent operands.
#[derive(Clone, Copy)]
pub(super) struct RawFinish {
    pub(super) bias: *const f32,
    pub(super) residual: *const f32,
    pub(super) ldr: usize,
    pub(super) act: InRegisters,
}

impl RawFinish {
    /// The residual pointer moved down `rows` rows (null stays null).
    ///
    /// # Safety
    /// The residual, when present, has at least `rows` more rows of `ldr` floats.
    pub(super) unsafe fn down(self, rows: usize) -> Self {
        // SAFETY: the caller's contract.
        Self { residual: if self.residual.is_null() { self.residual } else { unsafe { self.residual.add(rows * self.ldr) } }, ..self }
    }
}

/// The strip's epilogue split into what the kernel does in registers and the activation left
/// for [`after`] (sigmoid, tanh).
pub(super) fn decode(s: &Strip<'_>) -> (Option<RawFinish>, Option<Activation>) {
    let mut after = None;
    let finish = s.finish.map(|f| {
        let act = match f.activation {
            None => InRegisters::None,
            Some(Activation::Relu) => InRegisters::Relu,
            Some(Activation::LeakyRelu(alpha)) => InRegisters::LeakyRelu(alpha),
            Some(Activation::Clip(lo, hi)) => InRegisters::Clip(lo, hi),
            Some(other @ (Activation::Sigmoid | Activation::Tanh)) => {
                after = Some(other);
                InRegisters::None
            }
        };
        RawFinish { bias: f.bias.map_or(std::ptr::null(), <[f32]>::as_ptr), residual: f.residual.map_or(std::ptr::null(), <[f32]>::as_ptr), ldr: f.ldr, act }
    });
    (finish, after)
}

/// Applies the activation [`decode`] left out to the strip's stored tile.
pub(super) fn after(s: Strip<'_>, act: Option<Activation>) {
    if let Some(act) = act {
        for row in s.c.chunks_mut(s.ldc.max(1)).take(s.rows) {
            act.apply(&mut row[..s.cols]);
        }
    }
}
