//! The AVX-512 micro-kernel: a 12 x 16 register tile, one zmm accumulator per row.
//!
//! Why 12 x 16: a B panel row is 16 floats, exactly one zmm, so a tile reads B with one load per
//! K step and the packed layout is the one the AVX2 kernel uses (weights packed at load serve
//! either). An FMA has 4 cycles of latency; Intel cores with two 512-bit FMA units need 8
//! independent chains in flight, Zen 4 (one 512-bit FMA per cycle, double-pumped) needs 4.
//! Twelve rows are 12 chains, above both, and each A element is a broadcast folded into its FMA
//! (`vfmadd231ps zmm, zmm, m32{1to16}`), so a K step is 12 FMAs against 13 loads, within the two
//! or three loads per cycle those cores sustain. The 12 accumulators, the B vector and the
//! epilogue's bias, masks and constants use 16 of the 32 zmm registers: no spills, and the
//! compiler keeps the twelve A row offsets in general registers. A taller tile would add A
//! streams (one per row) that the L1 prefetcher has to follow; a 2-panel 12 x 32 tile would
//! halve the loads per FMA but needs a second B panel stream and a different strip driver.
//!
//! Compared with the AVX2 kernel's 6 x 16 it issues half the instructions for the same work,
//! and on Zen 4, whose peak is the same for either width, that frees the front end and the load
//! ports for the A and B streams.
//!
//! Tiles of up to four rows (batch-1 dense layers, the odd rows at the end of M) split K into
//! even and odd steps with separate accumulators, as the AVX2 kernel does, so they still have
//! eight chains. Column tails (a panel narrower than 16) use AVX-512's mask registers for C,
//! bias and residual, with no separate code path.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::raw::{self, InRegisters, RawStrip};
use super::{NR, Strip};

pub(super) const MR: usize = 12;

/// Proof that this CPU has AVX-512F: the only way to reach the `target_feature` kernel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Avx512(());

impl Avx512 {
    pub(super) fn new() -> Option<Self> {
        is_x86_feature_detected!("avx512f").then_some(Self(()))
    }
}

pub(super) fn strip(_proof: Avx512, mut s: Strip<'_>) {
    let (raw, after) = RawStrip::new(&mut s);
    // SAFETY: `Avx512` exists only where the CPU reported AVX-512F. `RawStrip::new` checked that
    // every view of the strip lies inside its slice, and `tiles` touches no other element.
    unsafe { tiles(raw) };
    raw::after(s, after);
}

/// The strip's micro-tiles, top to bottom: full 12-row tiles in one kernel call, then the
/// ragged last tile.
///
/// # Safety
/// As for [`kernel`], over `rows` rows.
#[target_feature(enable = "avx512f")]
unsafe fn tiles(s: RawStrip) {
    let (full, rest) = (s.rows / MR, s.rows % MR);
    // SAFETY: the caller's contract; the full tiles cover rows 0..full*MR, the last one the
    // rows after, so each call's rows are inside the caller's views.
    unsafe {
        if full > 0 {
            kernel::<MR>(full, s);
        }
        if rest > 0 {
            let s = s.down(full * MR);
            macro_rules! ragged {
                ($($r:literal)*) => {
                    match rest {
                        $($r => kernel::<$r>(1, s),)*
                        _ => unreachable!("a ragged tile has fewer than MR rows"),
                    }
                };
            }
            ragged!(1 2 3 4 5 6 7 8 9 10 11);
        }
    }
}

/// `count` tiles of `R` rows one below the other: `c[R x cols] (+)= a[R x kc] * b[kc x 16]`, then
/// the epilogue. The first tile also prefetches `next_b`'s `kc x 16` floats unless it is null.
///
/// # Safety
/// The CPU has AVX-512F; `count * R` rows of `kc` floats of A (stride `lda`) and `kc x 16`
/// floats of B and of `next_b` are readable, as are `cols` of bias and `count * R x cols` of the
/// residual (stride `ldr`) where not null; `count * R x cols` of C (stride `ldc`) is writable
/// and aliases none of them.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize>(count: usize, s: RawStrip) {
    let RawStrip { kc, a, lda, b, next_b, c, ldc, cols, accumulate, finish, .. } = s;
    // SAFETY: the caller's contract: A reads stay in each tile's rows 0..R, columns 0..kc
    // (stride lda), B and prefetch addresses in 0..kc*NR, and every C/bias/residual access is
    // masked to the columns below `cols`.
    unsafe {
        let mask: __mmask16 = if cols >= NR { !0 } else { (1u16 << cols) - 1 };
        let bias = match finish {
            Some(f) if !f.bias.is_null() => Some(_mm512_maskz_loadu_ps(mask, f.bias)),
            _ => None,
        };
        let residual = finish.map_or(std::ptr::null(), |f| f.residual);
        let (ldr, act) = finish.map_or((0, InRegisters::None), |f| (f.ldr, f.act));
        for t in 0..count {
            // offsets from the base, so no pointer is formed past the last tile
            let (a, c) = (a.add(t * R * lda), c.add(t * R * ldc));
            let residual = if residual.is_null() { residual } else { residual.add(t * R * ldr) };
            let next_b = if t == 0 { next_b } else { std::ptr::null() };
            raw::pull_epilogue_lines::<R>(c, ldc, residual, ldr, accumulate);
            let acc = if next_b.is_null() { dot::<R, false>(kc, a, lda, b, next_b) } else { dot::<R, true>(kc, a, lda, b, next_b) };
            complete::<R>(acc, c, ldc, &Epilogue { accumulate, bias, residual, ldr, act, mask });
        }
    }
}

/// `a[R x kc] * b[kc x 16]` in registers, prefetching `next_b`'s `kc x 16` floats if `PREFETCH`.
/// Out of line so the loop has every register to itself.
///
/// # Safety
/// The CPU has AVX-512F; `R x kc` of A (stride `lda`) and `kc x 16` of B (and of `next_b` if
/// `PREFETCH`) are readable.
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn dot<const R: usize, const PREFETCH: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, next_b: *const f32) -> [__m512; R] {
    // SAFETY: the caller's contract: reads stay in rows 0..R, columns 0..kc of A and in
    // 0..kc*NR of B; prefetches in 0..kc*NR of `next_b`.
    unsafe {
        let zero = _mm512_setzero_ps();
        let mut acc = [zero; R];
        // Tiles of up to four rows carry a second set of chains for the odd K steps (see the
        // module comment); the compiler drops it for taller tiles.
        let mut odd = [zero; R];
        macro_rules! step {
            ($acc:ident, $p:expr) => {{
                let p = $p;
                if PREFETCH {
                    // one 64-byte line per K step: the next slice arrives over this tile's run
                    _mm_prefetch::<_MM_HINT_T0>(next_b.add(p * NR).cast());
                }
                let bv = _mm512_loadu_ps(b.add(p * NR));
                for r in 0..R {
                    $acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(r * lda + p)), bv, $acc[r]);
                }
            }};
        }
        let mut p = 0;
        while p + 2 <= kc {
            step!(acc, p);
            if R <= 4 {
                step!(odd, p + 1);
            } else {
                step!(acc, p + 1);
            }
            p += 2;
        }
        if p < kc {
            step!(acc, p);
        }
        if R <= 4 {
            for (acc, odd) in acc.iter_mut().zip(&odd) {
                *acc = _mm512_add_ps(*acc, *odd);
            }
        }
        acc
    }
}

/// A tile's epilogue, decoded once per strip.
struct Epilogue {
    accumulate: bool,
    bias: Option<__m512>,
    /// Null when absent; else the tile's first residual element.
    residual: *const f32,
    ldr: usize,
    act: InRegisters,
    /// Columns below `cols`.
    mask: __mmask16,
}

/// `c = epilogue(acc (+ c))`, in the reference order (accumulated sums, bias, residual,
/// activation).
///
/// # Safety
/// AVX-512F is present; the masked columns of `R` rows of C (stride `ldc`) are writable, and of
/// the residual (stride `ldr`) readable unless it is null.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn complete<const R: usize>(mut v: [__m512; R], c: *mut f32, ldc: usize, e: &Epilogue) {
    // SAFETY: the caller's contract; masked-off lanes are not accessed.
    unsafe {
        if e.accumulate {
            for (r, v) in v.iter_mut().enumerate() {
                *v = _mm512_add_ps(*v, _mm512_maskz_loadu_ps(e.mask, c.add(r * ldc)));
            }
        }
        if let Some(bias) = e.bias {
            v.iter_mut().for_each(|v| *v = _mm512_add_ps(*v, bias));
        }
        if !e.residual.is_null() {
            for (r, v) in v.iter_mut().enumerate() {
                *v = _mm512_add_ps(*v, _mm512_maskz_loadu_ps(e.mask, e.residual.add(r * e.ldr)));
            }
        }
        let zero = _mm512_setzero_ps();
        match e.act {
            InRegisters::None => {}
            // max/min return their second operand for NaN, as f32::max/min do here
            InRegisters::Relu => v.iter_mut().for_each(|v| *v = _mm512_max_ps(*v, zero)),
            InRegisters::Clip(lo, hi) => {
                let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
                v.iter_mut().for_each(|v| *v = _mm512_min_ps(_mm512_max_ps(*v, lo), hi));
            }
            InRegisters::LeakyRelu(alpha) => {
                let alpha = _mm512_set1_ps(alpha);
                v.iter_mut().for_each(|v| *v = _mm512_mask_mul_ps(*v, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(*v, zero), *v, alpha));
            }
        }
        for (r, &v) in v.iter().enumerate() {
            _mm512_mask_storeu_ps(c.add(r * ldc), e.mask, v);
        }
    }
}
