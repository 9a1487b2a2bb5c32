//! A strip as the SIMD kernels take it: raw pointers (null for an absent operand), checked once
//! against the strip's slices, and the part of the activation the kernels apply in registers.
//! Sigmoid and tanh need `exp`, are rare behind a GEMM, and run on the stored tile afterwards
//! through the scalar activation code. Both kernels (AVX2, AVX-512) share it, so the pointer
//! arithmetic their `unsafe` rests on is written once.
#![allow(unsafe_code)]

use std::arch::x86_64::{_MM_HINT_ET0, _MM_HINT_T0, _mm_prefetch};

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

/// One strip's operands: `rows x kc` of A (stride `lda`), `kc x NR` of B and of `next_b` (null:
/// no prefetch), `rows x cols` of C (stride `ldc`), and the epilogue's.
#[derive(Clone, Copy)]
pub(super) struct RawStrip {
    pub(super) rows: usize,
    pub(super) kc: usize,
    pub(super) a: *const f32,
    pub(super) lda: usize,
    pub(super) b: *const f32,
    pub(super) next_b: *const f32,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    pub(super) cols: usize,
    pub(super) accumulate: bool,
    pub(super) finish: Option<RawFinish>,
}

impl RawStrip {
    /// Checks `s` ([`Strip::check`]: every view lies inside its slice) and takes its pointers;
    /// also returns the activation left for [`after`] (sigmoid, tanh). `c` comes from the
    /// strip's unique borrow, so nothing else aliases it while the strip lives.
    pub(super) fn new(s: &mut Strip<'_>) -> (Self, Option<Activation>) {
        s.check();
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
        let raw = Self {
            rows: s.rows,
            kc: s.kc,
            a: s.a.as_ptr(),
            lda: s.lda,
            b: s.b.as_ptr(),
            next_b: s.next_b.map_or(std::ptr::null(), <[f32]>::as_ptr),
            c: s.c.as_mut_ptr(),
            ldc: s.ldc,
            cols: s.cols,
            accumulate: s.accumulate,
            finish,
        };
        (raw, after)
    }

    /// The rows from `i` on (the ragged tile after the full ones). The next B slice is
    /// prefetched by the first tile only, so it is dropped unless `i` is 0.
    ///
    /// # Safety
    /// `i <= rows`.
    pub(super) unsafe fn down(self, i: usize) -> Self {
        // SAFETY: the caller's contract: the rows from `i` on lie inside A, C and the residual.
        unsafe {
            Self {
                rows: self.rows - i,
                a: self.a.add(i * self.lda),
                c: self.c.add(i * self.ldc),
                next_b: if i == 0 { self.next_b } else { std::ptr::null() },
                finish: self.finish.map(|f| f.down(i)),
                ..self
            }
        }
    }
}

/// Applies the activation [`decode`] left out to the strip's stored tile.
pub(super) fn after(s: Strip<'_>, act: Option<Activation>) {
    if let Some(act) = act {
        for row in s.c.chunks_mut(s.ldc.max(1)).take(s.rows) {
            act.apply(&mut row[..s.cols]);
        }
    }
}

/// Asks for a tile's C rows (for writing) and residual rows before its dot product runs, so
/// they arrive while it computes; both SIMD kernels call it. The epilogue touches one line per
/// row, `ldc` or `ldr` floats apart, a pattern no hardware prefetcher follows, so without this
/// each of them is a miss that the tile's stores wait for. A ResNet block's last 1x1 conv with
/// its shortcut (k = 64, 56x56x256) spent 40% more time than the same conv without one. C lines
/// of an accumulating K block were written by the previous block and are still near.
///
/// # Safety
/// `R` rows of C (stride `ldc`) and of the residual (stride `ldr`, unless null) lie inside
/// their views. Prefetches do not fault, but the addresses are formed in bounds.
#[inline(always)]
pub(super) unsafe fn pull_epilogue_lines<const R: usize>(c: *mut f32, ldc: usize, residual: *const f32, ldr: usize, accumulate: bool) {
    // SAFETY: the caller's contract: row r's first element is inside each view.
    unsafe {
        if !accumulate {
            for r in 0..R {
                _mm_prefetch::<_MM_HINT_ET0>(c.add(r * ldc).cast());
            }
        }
        if !residual.is_null() {
            for r in 0..R {
                _mm_prefetch::<_MM_HINT_T0>(residual.add(r * ldr).cast());
            }
        }
    }
}
