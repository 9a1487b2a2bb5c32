//! The AVX2+FMA micro-kernel: a 6 x 16 register tile.
//!
//! Why 6 x 16: an FMA has 4-5 cycles of latency and Zen and Intel cores issue two per cycle, so
//! at least 8-10 independent accumulator chains must be in flight to keep both ports busy. Six
//! rows of two 8-float vectors are 12 accumulators; with the two B vectors of the current K step
//! and one broadcast A element that is 15 of AVX2's 16 ymm registers, no spills. Per K step it
//! issues 12 FMAs against 2 B loads and 6 broadcast loads, under the two loads per cycle the
//! core sustains beside its two FMAs. A wider tile (4 x 24) needs the same registers but three
//! B loads per step and 24-column panels that waste more padding on 64- and 32-channel layers.
//!
//! Tiles of one or two rows (batch-1 dense layers, the odd row at the end of M) would have only
//! 2 or 4 chains, latency-bound at a fraction of peak; they split K into even and odd steps with
//! separate accumulators and add the two at the end.
//!
//! Raw `std::arch` intrinsics rather than pulp: the kernel needs an exact register budget,
//! masked loads and stores for the column tail, and unaligned broadcasts from strided A rows.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::raw::{self, InRegisters, RawStrip};
use super::{NR, Strip};

pub(super) const MR: usize = 6;

/// Proof that this CPU has AVX2 and FMA: the only way to reach the `target_feature` kernel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Avx2Fma(());

impl Avx2Fma {
    pub(super) fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Self(()))
    }
}

pub(super) fn strip(_proof: Avx2Fma, mut s: Strip<'_>) {
    let (raw, after) = RawStrip::new(&mut s);
    // SAFETY: `Avx2Fma` exists only where the CPU reported AVX2 and FMA. `RawStrip::new`
    // checked that every view of the strip lies inside its slice, and `tiles` touches no
    // other element.
    unsafe { tiles(raw) };
    raw::after(s, after);
}

/// The strip's micro-tiles, top to bottom: full 6-row tiles in one kernel call, so the setup
/// (masks, bias vectors, epilogue decoding) is paid once per strip, then the ragged last tile.
///
/// # Safety
/// As for [`kernel`], over `rows` rows.
#[target_feature(enable = "avx2,fma")]
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
            match rest {
                1 => kernel::<1>(1, s),
                2 => kernel::<2>(1, s),
                3 => kernel::<3>(1, s),
                4 => kernel::<4>(1, s),
                _ => kernel::<5>(1, s),
            }
        }
    }
}

/// `count` tiles of `R` rows one below the other: `c[R x cols] (+)= a[R x kc] * b[kc x 16]`, then
/// the epilogue. The first tile also prefetches `next_b`'s `kc x 16` floats unless it is null.
///
/// # Safety
/// The CPU has AVX2 and FMA; `count * R` rows of `kc` floats of A (stride `lda`) and `kc x 16`
/// floats of B and of `next_b` are readable, as are `cols` of bias and `count * R x cols` of the
/// residual (stride `ldr`) where not null; `count * R x cols` of C (stride `ldc`) is writable
/// and aliases none of them.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize>(count: usize, s: RawStrip) {
    let RawStrip { kc, a, lda, b, next_b, c, ldc, cols, accumulate, finish, .. } = s;
    // SAFETY: the caller's contract: A reads stay in each tile's rows 0..R, columns 0..kc
    // (stride lda), B and prefetch addresses in 0..kc*NR, and every C/bias/residual access goes
    // through `load`/`store`, which mask off the columns past `cols`.
    unsafe {
        let full = cols == NR;
        let limit = _mm256_set1_epi32(cols as i32);
        let mask = [
            _mm256_cmpgt_epi32(limit, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
            _mm256_cmpgt_epi32(limit, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15)),
        ];
        let zero = _mm256_setzero_ps();
        let (has_bias, bias) = match finish {
            Some(f) if !f.bias.is_null() => (true, [load::<false>(f.bias, 0, mask), load::<false>(f.bias, 1, mask)]),
            _ => (false, [zero; 2]),
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
            let epilogue = Epilogue { accumulate, bias: has_bias.then_some(bias), residual, ldr, act, mask };
            if full {
                complete::<R, true>(acc, c, ldc, &epilogue);
            } else {
                complete::<R, false>(acc, c, ldc, &epilogue);
            }
        }
    }
}

/// `a[R x kc] * b[kc x 16]` in registers, prefetching `next_b`'s `kc x 16` floats if `PREFETCH`.
/// Kept out of line so the loop has every register to itself: inlined into the strip loop, the
/// epilogue's state pushed its pointers onto the stack.
///
/// # Safety
/// The CPU has AVX2 and FMA; `R x kc` of A (stride `lda`) and `kc x 16` of B (and of `next_b`
/// if `PREFETCH`) are readable.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn dot<const R: usize, const PREFETCH: bool>(kc: usize, a: *const f32, lda: usize, b: *const f32, next_b: *const f32) -> [[__m256; 2]; R] {
    // SAFETY: the caller's contract: reads stay in rows 0..R, columns 0..kc of A and in
    // 0..kc*NR of B; prefetches in 0..kc*NR of `next_b`.
    unsafe {
        let zero = _mm256_setzero_ps();
        let mut acc = [[zero; 2]; R];
        // Rows of one or two carry a second set of chains for the odd K steps (see the module
        // comment); the compiler drops it for taller tiles.
        let mut odd = [[zero; 2]; R];
        macro_rules! step {
            ($acc:ident, $p:expr) => {{
                let p = $p;
                if PREFETCH {
                    // one 64-byte line per K step: the next slice arrives over this tile's run
                    _mm_prefetch::<_MM_HINT_T0>(next_b.add(p * NR).cast());
                }
                let (b0, b1) = (_mm256_loadu_ps(b.add(p * NR)), _mm256_loadu_ps(b.add(p * NR + 8)));
                for r in 0..R {
                    let x = _mm256_set1_ps(*a.add(r * lda + p));
                    $acc[r][0] = _mm256_fmadd_ps(x, b0, $acc[r][0]);
                    $acc[r][1] = _mm256_fmadd_ps(x, b1, $acc[r][1]);
                }
            }};
        }
        let mut p = 0;
        while p + 2 <= kc {
            step!(acc, p);
            if R <= 2 {
                step!(odd, p + 1);
            } else {
                step!(acc, p + 1);
            }
            p += 2;
        }
        if p < kc {
            step!(acc, p);
        }
        if R <= 2 {
            for (acc, odd) in acc.iter_mut().zip(&odd) {
                acc[0] = _mm256_add_ps(acc[0], odd[0]);
                acc[1] = _mm256_add_ps(acc[1], odd[1]);
            }
        }
        acc
    }
}

/// A tile's epilogue, decoded once per strip.
struct Epilogue {
    accumulate: bool,
    bias: Option<[__m256; 2]>,
    /// Null when absent; else the tile's first residual element.
    residual: *const f32,
    ldr: usize,
    act: InRegisters,
    /// Lanes below `cols` in each half of the tile (used when not `FULL`).
    mask: [__m256i; 2],
}

/// `c = epilogue(acc (+ c))`, as straight-line code per step: one branch per step and tile, not
/// per vector (the per-vector form spent a fifth of a k = 64 tile on branches). `FULL` tiles
/// use plain loads and stores, the column tail masked ones.
///
/// # Safety
/// AVX2 is present; `R x 16` (`FULL`) or the masked columns of `R` rows of C (stride `ldc`)
/// are writable, and of the residual (stride `ldr`) readable unless it is null.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn complete<const R: usize, const FULL: bool>(mut v: [[__m256; 2]; R], c: *mut f32, ldc: usize, e: &Epilogue) {
    // SAFETY: the caller's contract; `load`/`store` touch only the lanes it allows.
    unsafe {
        if e.accumulate {
            for (r, v) in v.iter_mut().enumerate() {
                for (h, v) in v.iter_mut().enumerate() {
                    *v = _mm256_add_ps(*v, load::<FULL>(c.add(r * ldc), h, e.mask));
                }
            }
        }
        if let Some(bias) = e.bias {
            for v in &mut v {
                v[0] = _mm256_add_ps(v[0], bias[0]);
                v[1] = _mm256_add_ps(v[1], bias[1]);
            }
        }
        if !e.residual.is_null() {
            for (r, v) in v.iter_mut().enumerate() {
                for (h, v) in v.iter_mut().enumerate() {
                    *v = _mm256_add_ps(*v, load::<FULL>(e.residual.add(r * e.ldr), h, e.mask));
                }
            }
        }
        let zero = _mm256_setzero_ps();
        match e.act {
            InRegisters::None => {}
            // max/min return their second operand for NaN, as f32::max/min do here
            InRegisters::Relu => v.iter_mut().flatten().for_each(|v| *v = _mm256_max_ps(*v, zero)),
            InRegisters::Clip(lo, hi) => {
                let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
                v.iter_mut().flatten().for_each(|v| *v = _mm256_min_ps(_mm256_max_ps(*v, lo), hi));
            }
            InRegisters::LeakyRelu(alpha) => {
                let alpha = _mm256_set1_ps(alpha);
                v.iter_mut().flatten().for_each(|v| *v = _mm256_blendv_ps(*v, _mm256_mul_ps(*v, alpha), _mm256_cmp_ps::<_CMP_LT_OQ>(*v, zero)));
            }
        }
        for (r, v) in v.iter().enumerate() {
            for (h, &v) in v.iter().enumerate() {
                store::<FULL>(c.add(r * ldc), h, e.mask, v);
            }
        }
    }
}

/// Half `h` (columns `8h..8h + 8`) of a tile row; past `cols` only through the mask.
///
/// # Safety
/// AVX2 is present, and the columns of the half that `FULL` or `mask` selects are readable.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load<const FULL: bool>(ptr: *const f32, h: usize, mask: [__m256i; 2]) -> __m256 {
    // SAFETY: the caller's contract; masked-off lanes are not accessed.
    // The second half's address may lie past the end of the slice (and of the allocation)
    // when cols <= 8, so it is formed with `wrapping_add`; its mask is all zeros then.
    unsafe { if FULL { _mm256_loadu_ps(ptr.add(8 * h)) } else { _mm256_maskload_ps(ptr.wrapping_add(8 * h), mask[h]) } }
}

/// The store counterpart of [`load`].
///
/// # Safety
/// AVX2 is present, and the columns of the half that `FULL` or `mask` selects are writable.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store<const FULL: bool>(ptr: *mut f32, h: usize, mask: [__m256i; 2], v: __m256) {
    // SAFETY: the caller's contract; masked-off lanes are not accessed.
    unsafe {
        if FULL {
            _mm256_storeu_ps(ptr.add(8 * h), v)
        } else {
            _mm256_maskstore_ps(ptr.wrapping_add(8 * h), mask[h], v)
        }
    }
}
