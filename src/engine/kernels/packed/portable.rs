//! The fallback micro-kernel for CPUs without AVX2+FMA (and aarch64): a 4 x 16 tile of plain
//! arrays that the compiler keeps in vector registers. The inner loop over the 16 columns of a
//! B row has a constant trip count and no dependence between columns, so it vectorises at
//! whatever width the target has without any target-specific code. The tile is 16 four-lane
//! vectors: half of NEON's 32 registers, 16 independent chains to cover the FMA latency, and 4
//! rows give each B row four uses per load. With baseline x86-64 (SSE2, no FMA) it runs at
//! about a quarter of the AVX2 kernel.

use super::{Finish, NR, Strip, finish_row};

pub(super) const MR: usize = 4;

pub(super) fn strip(s: Strip<'_>) {
    s.check();
    for i in (0..s.rows).step_by(MR) {
        let t = Tile {
            a: &s.a[i * s.lda..],
            lda: s.lda,
            kc: s.kc,
            b: s.b,
            c: &mut s.c[i * s.ldc..],
            ldc: s.ldc,
            cols: s.cols,
            accumulate: s.accumulate,
            finish: s.finish.map(|f| Finish { residual: f.residual.map(|r| &r[i * f.ldr..]), ..f }),
        };
        match (s.rows - i).min(MR) {
            1 => kernel::<1>(t),
            2 => kernel::<2>(t),
            3 => kernel::<3>(t),
            _ => kernel::<4>(t),
        }
    }
}

/// One micro-tile of a strip, slices starting at its first element.
struct Tile<'t> {
    a: &'t [f32],
    lda: usize,
    kc: usize,
    b: &'t [f32],
    c: &'t mut [f32],
    ldc: usize,
    cols: usize,
    accumulate: bool,
    finish: Option<Finish<'t>>,
}

fn kernel<const R: usize>(t: Tile<'_>) {
    let kc = t.kc;
    let rows: [&[f32]; R] = std::array::from_fn(|r| &t.a[r * t.lda..r * t.lda + kc]);
    let b = &t.b[..kc * NR];
    let mut acc = [[0.0f32; NR]; R];
    for p in 0..kc {
        // a fixed-length row, so the column loop below has no bounds checks and vectorises
        let b: &[f32; NR] = b[p * NR..p * NR + NR].try_into().expect("NR floats");
        for r in 0..R {
            let x = rows[r][p];
            for j in 0..NR {
                acc[r][j] += x * b[j];
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        // a copy: borrowing `acc` itself here would pin it to memory and keep the loop above
        // from vectorising
        let mut row = *row;
        let sums = &mut row[..t.cols];
        let out = &mut t.c[r * t.ldc..r * t.ldc + t.cols];
        if t.accumulate {
            sums.iter_mut().zip(out.iter()).for_each(|(v, c)| *v += c);
        }
        if let Some(f) = t.finish {
            finish_row(sums, f.bias, f.residual.map(|res| &res[r * f.ldr..]), f.activation);
        }
        out.copy_from_slice(sums);
    }
}
