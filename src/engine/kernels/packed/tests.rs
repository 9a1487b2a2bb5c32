use super::*;

/// Fixed-seed LCG (Knuth's MMIX constants): reproducible inputs without a rand dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() as usize) % (hi - lo + 1)
    }

    /// Uniform in [-1, 1).
    fn value(&mut self) -> f32 {
        (self.next() as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }

    fn values(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.value()).collect()
    }
}

const ACTIVATIONS: [Option<Activation>; 6] = [
    None,
    Some(Activation::Relu),
    Some(Activation::LeakyRelu(0.1)),
    Some(Activation::Sigmoid),
    Some(Activation::Tanh),
    Some(Activation::Clip(-0.5, 0.75)),
];

fn activate(act: Option<Activation>, z: f64) -> f64 {
    match act {
        None => z,
        Some(Activation::Relu) => z.max(0.0),
        Some(Activation::LeakyRelu(alpha)) => {
            if z < 0.0 {
                z * f64::from(alpha)
            } else {
                z
            }
        }
        Some(Activation::Sigmoid) => 1.0 / (1.0 + (-z).exp()),
        Some(Activation::Tanh) => z.tanh(),
        Some(Activation::Clip(lo, hi)) => z.max(f64::from(lo)).min(f64::from(hi)),
    }
}

/// Sentinel for C elements outside the view (row padding past `n`) and for the in-view
/// elements before the call: a kernel that reads C before its first K block, or writes past
/// `n`, shows up as a mismatch.
const UNTOUCHED: f32 = -7777.0;

struct Case {
    m: usize,
    k: usize,
    n: usize,
    lda: usize,
    ldc: usize,
    bias: bool,
    residual: bool,
    activation: Option<Activation>,
}

/// Runs `case` at every instruction set this CPU has and at 1 and 2 threads (splitting even
/// small products, by rows or by panels depending on m), and checks every C element against a
/// float64 reference, to 1e-4 of the sum of |terms| that fed it (the bound float32 rounding of
/// a k-term dot product grows with), and the row padding for stray writes.
fn check(rng: &mut Lcg, case: &Case, threads: &[usize]) {
    let &Case { m, k, n, lda, ldc, bias, residual, activation } = case;
    let a = rng.values(if m == 0 { 0 } else { (m - 1) * lda + k });
    let b_stride = n + rng.range(0, 2);
    let b = rng.values(k * b_stride);
    let bias = bias.then(|| rng.values(n));
    let residual = residual.then(|| rng.values(m * ldc));
    let packed = PackedB::pack(&b, k, n, b_stride);
    assert_eq!((packed.k(), packed.n()), (k, n));
    let mut want = vec![(0.0f64, 0.0f64); m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut z, mut scale) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = f64::from(a[i * lda + p]) * f64::from(b[p * b_stride + j]);
                z += t;
                scale += t.abs();
            }
            for extra in [bias.as_ref().map(|v| v[j]), residual.as_ref().map(|v| v[i * ldc + j])].into_iter().flatten() {
                z += f64::from(extra);
                scale += f64::from(extra).abs();
            }
            want[i * n + j] = (activate(activation, z), 1e-4 * scale.max(1.0));
        }
    }
    let epilogue = Epilogue { bias: bias.as_deref(), activation, residual: residual.as_deref() };
    for isa in isas() {
        for &threads in threads {
            let mut c = vec![UNTOUCHED; m * ldc];
            gemm_with(isa, &a, lda, m, &packed, &mut c, ldc, &epilogue, threads, 0);
            for (i, row) in c.chunks_exact(ldc.max(1)).enumerate() {
                assert!(row[n..].iter().all(|&v| v == UNTOUCHED), "{isa:?} wrote past n in row {i} of m={m} k={k} n={n} ldc={ldc}");
                for (j, (&got, &(want, tolerance))) in row.iter().zip(&want[i * n..(i + 1) * n]).enumerate() {
                    assert!(
                        (f64::from(got) - want).abs() <= tolerance,
                        "{isa:?} threads={threads} m={m} k={k} n={n} lda={lda} ldc={ldc} bias={} residual={} {activation:?}: \
                         c[{i}][{j}] = {got}, want {want}",
                        case.bias,
                        case.residual,
                    );
                }
            }
        }
    }
}

fn isas() -> Vec<Isa> {
    Isa::available()
}

#[test]
fn matches_float64_reference_across_shapes_strides_and_epilogues() {
    let mut rng = Lcg(0x5eed);
    let mut cases = 0;
    for bias in [false, true] {
        for residual in [false, true] {
            for activation in ACTIVATIONS {
                for shape in 0..6 {
                    let m = rng.range(1, 40);
                    // k = 1, short, and past KC so K blocking (accumulating in C) runs
                    let k = match shape {
                        0 => 1,
                        1 | 2 => rng.range(2, 40),
                        3 => rng.range(41, KC),
                        _ => rng.range(KC + 1, 600),
                    };
                    let n = rng.range(1, 70);
                    // every other shape pads the rows of A and C
                    let pad = shape % 2;
                    let (lda, ldc) = (k + pad * rng.range(1, 5), n + pad * rng.range(1, 5));
                    check(&mut rng, &Case { m, k, n, lda, ldc, bias, residual, activation }, &[1, 2]);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 24 * 6);
}

/// The shapes at the edges of every tile and block: one element, exact tiles, one past them, k
/// exactly at and one past KC, k splitting into three blocks, m past MC (two M blocks), k = 0.
#[test]
fn edge_shapes_match_reference() {
    let mut rng = Lcg(7);
    let shapes = [
        (1, 1, 1),
        (6, 1, 16),
        (7, 3, 17),
        (4, 5, 32),
        (12, KC, 15),
        (5, KC + 1, 33),
        (13, 3 * KC - 1, 48),
        (MC + 7, 9, 20),
        (24, 70, 16),
        (35, KC + 3, 31),
        (2 * MC + 11, 20, 17),
        (40, 600, 70),
        (3, 0, 5),
    ];
    for (m, k, n) in shapes {
        let case = Case { m, k, n, lda: k + 1, ldc: n, bias: true, residual: true, activation: Some(Activation::Relu) };
        check(&mut rng, &case, &[1, 2, 3]);
    }
    // rows 2 KiB apart are copied into a padded block first, across K and M blocks
    for (m, k, n, lda) in [(30, 512, 40, 512), (MC + 5, 600, 33, 1024), (7, 300, 20, 512)] {
        let case = Case { m, k, n, lda, ldc: n, bias: true, residual: true, activation: Some(Activation::Relu) };
        check(&mut rng, &case, &[1, 2]);
    }
}

#[test]
fn packs_a_transposed_view_like_its_transpose() {
    let mut rng = Lcg(3);
    let (k, n) = (9, 21);
    let bt = rng.values(n * k); // [n, k]
    let b: Vec<f32> = (0..k * n).map(|i| bt[(i % n) * k + i / n]).collect(); // [k, n]
    assert_eq!(PackedB::pack_view(&bt, k, n, 1, k).data, PackedB::pack(&b, k, n, n).data);
}

#[test]
#[should_panic(expected = "A (3x4, lda 4) exceeds")]
fn refuses_an_a_view_past_its_slice() {
    let b = PackedB::pack(&[0.0; 8], 4, 2, 2);
    gemm(&[0.0; 11], 4, 3, &b, &mut [0.0; 6], 2, &Epilogue::default());
}

#[test]
#[should_panic(expected = "bias has 3 values for 2 columns")]
fn refuses_a_bias_of_the_wrong_length() {
    let b = PackedB::pack(&[0.0; 8], 4, 2, 2);
    let epilogue = Epilogue { bias: Some(&[0.0; 3]), ..Epilogue::default() };
    gemm(&[0.0; 12], 4, 3, &b, &mut [0.0; 6], 2, &epilogue);
}

/// Release-profile throughput against candle's matmul (the gemm crate, which packs B on every
/// call), each of this CPU's kernels on one thread, and the dispatched one split over two:
/// `cargo test --release --lib packed -- --ignored --nocapture` with `RAYON_NUM_THREADS=1` so
/// candle stays on one thread (the 2-thread column then needs a pool of two: run it without).
/// The packed calls include a bias + ReLU epilogue, candle's do not. `PACKED_SHAPES="m,k,n;m,k,n"` times other shapes.
#[test]
#[ignore]
fn timing() {
    use crate::engine::kernels::best_seconds;
    let mut shapes = vec![(3136, 64, 64), (3136, 576, 64), (784, 1152, 128), (49, 2048, 512), (49, 4608, 512), (1, 2048, 1000), (16, 2048, 1000)];
    if let Ok(only) = std::env::var("PACKED_SHAPES") {
        shapes = only
            .split(';')
            .filter_map(|s| {
                let v: Vec<usize> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                (v.len() == 3).then(|| (v[0], v[1], v[2]))
            })
            .collect();
    }
    let mut rng = Lcg(1);
    let isas = Isa::available();
    eprintln!("dispatched kernel {:?}; GFLOP/s of the fastest call in 0.5 s; last column: the dispatched kernel on 2 threads", Isa::detect());
    let names: Vec<String> = isas.iter().map(|isa| format!("{isa:?}").split('(').next().unwrap_or("?").to_string()).collect();
    eprintln!("{:>16} {:>9} {} {:>10}", "m x k x n", "candle", names.iter().map(|n| format!("{n:>10}")).collect::<String>(), "2 threads");
    for &(m, k, n) in &shapes {
        let a = rng.values(m * k);
        let b = rng.values(k * n);
        let bias = rng.values(n);
        let packed = PackedB::pack(&b, k, n, n);
        let mut c = vec![0.0f32; m * n];
        let epilogue = Epilogue { bias: Some(&bias), activation: Some(Activation::Relu), residual: None };
        let flops = 2.0 * (m * k * n) as f64;
        let (at, bt) = (candle_core::Tensor::from_slice(&a, (m, k), &candle_core::Device::Cpu).expect("a"), candle_core::Tensor::from_slice(&b, (k, n), &candle_core::Device::Cpu).expect("b"));
        let g = |t: f64| flops / t / 1e9;
        let t_sgemm = best_seconds(|| {
            std::hint::black_box(at.matmul(&bt).expect("matmul"));
        });
        let per_isa: String = isas
            .iter()
            .map(|&isa| format!("{:>10.1}", g(best_seconds(|| gemm_with(isa, &a, k, m, &packed, &mut c, n, &epilogue, 1, PARALLEL_MACS)))))
            .collect();
        let t_two = best_seconds(|| gemm_parallel(&a, k, m, &packed, &mut c, n, &epilogue, 2));
        eprintln!("{:>16} {:>9.1} {per_isa} {:>10.1}", format!("{m}x{k}x{n}"), g(t_sgemm), g(t_two));
    }
}
