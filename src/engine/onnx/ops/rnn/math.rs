//! Lane-wise math for the gate updates: SIMD exp/sigmoid/tanh and the activation table.
//!
//! Everything here is `#[inline(always)]` and generic over [`pulp::Simd`] so that it is compiled
//! inside the caller's `vectorize` context (AVX-512 or AVX2+FMA where available); an out-of-line call would
//! lose the target features. Sigmoid and tanh stay within a few ulp of the libm results (the
//! unit tests hold them to 1e-6 relative), so the cell outputs match onnxruntime to ~1e-7.

use pulp::Simd;
#[cfg(test)]
use pulp::WithSimd;

pub(super) use crate::engine::kernels::simd::dispatch;

/// Runs a fresh `make()` at every instruction set this CPU has (scalar included), so tests
/// cover the paths `dispatch` would not pick here.
#[cfg(test)]
pub(super) fn at_every_level<Op: WithSimd>(make: impl Fn() -> Op) -> Vec<Op::Output> {
    let mut out = vec![make().with_simd(pulp::Scalar::new())];
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if let Some(simd) = pulp::x86::V3::try_new() {
        out.push(Simd::vectorize(simd, make()));
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V4::try_new() {
        out.push(Simd::vectorize(simd, make()));
    }
    out
}

/// `dst[i] = f(dst[i], a[i], b[i], ...)` over whole vectors, then once over the ragged tail
/// through a partial vector, so every element sees the same arithmetic. Sources are slice
/// variables at least as long as `dst`; the macro shadows them with vectors in `$f`.
macro_rules! lanewise {
    ($s:expr, $dst:expr, ($($v:ident),*), |$d:ident| $f:expr) => {{
        let dst: &mut [f32] = $dst;
        let _n = dst.len();
        $( let $v: (&[S::f32s], &[f32]) = S::as_simd_f32s(&$v[.._n]); )*
        let (head, tail) = S::as_mut_simd_f32s(dst);
        for (_i, slot) in head.iter_mut().enumerate() {
            let $d = *slot;
            $( let $v = $v.0[_i]; )*
            *slot = $f;
        }
        if !tail.is_empty() {
            let $d = $s.partial_load_f32s(tail);
            $( let $v = $s.partial_load_f32s($v.1); )*
            let out = $f;
            $s.partial_store_f32s(tail, out);
        }
    }};
}
pub(super) use lanewise;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5 * 2^23: adding it rounds a float of magnitude < 2^22 to an integer that then sits in
/// the low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;
/// ln 2 split in two (Cody and Waite): the high part has few enough bits that `n * LN2_HI` is
/// exact for every exponent used here, even without a fused multiply-add.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this, e^x is subnormal; those results flush to zero.
const EXP_FLOOR: f32 = -87.3;
/// Where tanh switches from its Taylor polynomial to the exponential form.
const TANH_SMALL: f32 = 0.55;

/// e^x for x <= 0 (all that sigmoid and tanh need): no overflow case, result in [0, 1].
#[inline(always)]
fn exp_nonpositive<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let xc = s.max_f32s(x, s.splat_f32s(EXP_FLOOR));
    let rounded = s.mul_add_e_f32s(xc, s.splat_f32s(LOG2E), s.splat_f32s(ROUNDER));
    let n = s.sub_f32s(rounded, s.splat_f32s(ROUNDER));
    let f = s.mul_add_e_f32s(n, s.splat_f32s(-LN2_HI), xc);
    let f = s.mul_add_e_f32s(n, s.splat_f32s(-LN2_LO), f);
    // e^f on |f| <= ln2/2 by its Taylor series to degree 7: truncation error below 6e-9.
    let mut p = s.splat_f32s(1.0 / 5040.0);
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = s.mul_add_e_f32s(p, f, s.splat_f32s(c));
    }
    // 2^n: the integer n sits in the low bits of `rounded`; shifting it into the exponent field
    // drops the rounder's own bits (they are all above bit 9).
    let bits = s.wrapping_dyn_shl_u32s(s.transmute_u32s_f32s(rounded), s.splat_u32s(23));
    let scale = s.transmute_f32s_u32s(s.add_u32s(bits, s.splat_u32s(127 << 23)));
    let y = s.mul_f32s(p, scale);
    s.select_f32s(s.less_than_f32s(x, s.splat_f32s(EXP_FLOOR)), s.splat_f32s(0.0), y)
}

/// NaN in, NaN out (the clamps above would otherwise turn it into a number).
#[inline(always)]
fn keep_nan<S: Simd>(s: S, x: S::f32s, y: S::f32s) -> S::f32s {
    s.select_f32s(s.equal_f32s(x, x), y, x)
}

/// 1 / (1 + e^-x), evaluated through e^-|x| so that it never overflows.
#[inline(always)]
pub(super) fn sigmoid<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let e = exp_nonpositive(s, s.neg_f32s(s.abs_f32s(x)));
    let pos = s.div_f32s(s.splat_f32s(1.0), s.add_f32s(s.splat_f32s(1.0), e));
    let y = s.select_f32s(s.less_than_f32s(x, s.splat_f32s(0.0)), s.mul_f32s(e, pos), pos);
    keep_nan(s, x, y)
}

/// tanh: an odd Taylor polynomial near zero (where the exponential form would cancel) and
/// (1 - e^-2|x|) / (1 + e^-2|x|) elsewhere, with the sign copied back.
#[inline(always)]
pub(super) fn tanh<S: Simd>(s: S, x: S::f32s) -> S::f32s {
    let ax = s.abs_f32s(x);
    let e = exp_nonpositive(s, s.mul_f32s(ax, s.splat_f32s(-2.0)));
    let one = s.splat_f32s(1.0);
    let big = s.div_f32s(s.sub_f32s(one, e), s.add_f32s(one, e));
    // tanh(x)/x in y = x^2, through x^15; the first omitted term is < 3e-8 at |x| = 0.55.
    let y = s.mul_f32s(ax, ax);
    let mut p = s.splat_f32s(-929_569.0 / 638_512_875.0);
    for c in [21_844.0 / 6_081_075.0, -1_382.0 / 155_925.0, 62.0 / 2_835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0, 1.0] {
        p = s.mul_add_e_f32s(p, y, s.splat_f32s(c));
    }
    let small = s.mul_f32s(p, ax);
    let magnitude = s.select_f32s(s.less_than_f32s(ax, s.splat_f32s(TANH_SMALL)), small, big);
    let signed = s.or_f32s(magnitude, s.and_f32s(x, s.splat_f32s(-0.0)));
    keep_nan(s, x, signed)
}

/// The activation functions ONNX lets LSTM, GRU and RNN name for their gates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Activation {
    Sigmoid,
    Tanh,
    Relu,
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    HardSigmoid(f32, f32),
    Affine(f32, f32),
    ScaledTanh(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl Activation {
    /// Resolves `activations` with `activation_alpha`/`activation_beta`. ONNX consumes the
    /// alpha and beta lists in the order of the functions that take them; a function whose
    /// value is missing falls back to its own operator's default.
    pub(super) fn parse_list(names: &[String], alphas: &[f32], betas: &[f32]) -> Result<Vec<Self>, String> {
        let mut alphas = alphas.iter().copied();
        let mut betas = betas.iter().copied();
        names
            .iter()
            .map(|name| {
                let mut alpha = |default: f32| alphas.next().unwrap_or(default);
                Ok(match name.to_ascii_lowercase().as_str() {
                    "sigmoid" => Activation::Sigmoid,
                    "tanh" => Activation::Tanh,
                    "relu" => Activation::Relu,
                    "leakyrelu" => Activation::LeakyRelu(alpha(0.01)),
                    "thresholdedrelu" => Activation::ThresholdedRelu(alpha(1.0)),
                    "hardsigmoid" => Activation::HardSigmoid(alpha(0.2), betas.next().unwrap_or(0.5)),
                    "affine" => Activation::Affine(alpha(1.0), betas.next().unwrap_or(0.0)),
                    "scaledtanh" => Activation::ScaledTanh(alpha(1.0), betas.next().unwrap_or(1.0)),
                    "elu" => Activation::Elu(alpha(1.0)),
                    "softsign" => Activation::Softsign,
                    "softplus" => Activation::Softplus,
                    _ => return Err(format!("names '{name}', which is not a supported activation")),
                })
            })
            .collect()
    }
}

/// Applies `act` to `x` in place. Inlined only in optimised builds: at opt-level 0 every
/// inlined copy keeps its own stack slots, and the dozens of call sites overflow a 2 MiB
/// thread stack (out of line, the SIMD calls are slow but correct).
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) fn activate<S: Simd>(s: S, act: Activation, x: &mut [f32]) {
    let zero = s.splat_f32s(0.0);
    let one = s.splat_f32s(1.0);
    match act {
        Activation::Sigmoid => lanewise!(s, x, (), |v| sigmoid(s, v)),
        Activation::Tanh => lanewise!(s, x, (), |v| tanh(s, v)),
        Activation::Relu => lanewise!(s, x, (), |v| s.max_f32s(v, zero)),
        Activation::LeakyRelu(a) => {
            let a = s.splat_f32s(a);
            lanewise!(s, x, (), |v| s.select_f32s(s.less_than_f32s(v, zero), s.mul_f32s(v, a), v))
        }
        Activation::ThresholdedRelu(a) => {
            let a = s.splat_f32s(a);
            lanewise!(s, x, (), |v| s.select_f32s(s.greater_than_f32s(v, a), v, zero))
        }
        Activation::HardSigmoid(a, b) => {
            let (a, b) = (s.splat_f32s(a), s.splat_f32s(b));
            lanewise!(s, x, (), |v| s.max_f32s(zero, s.min_f32s(one, s.mul_add_e_f32s(v, a, b))))
        }
        Activation::Affine(a, b) => {
            let (a, b) = (s.splat_f32s(a), s.splat_f32s(b));
            lanewise!(s, x, (), |v| s.mul_add_e_f32s(v, a, b))
        }
        Activation::ScaledTanh(a, b) => {
            let (a, b) = (s.splat_f32s(a), s.splat_f32s(b));
            lanewise!(s, x, (), |v| s.mul_f32s(a, tanh(s, s.mul_f32s(b, v))))
        }
        Activation::Softsign => lanewise!(s, x, (), |v| s.div_f32s(v, s.add_f32s(one, s.abs_f32s(v)))),
        // Rare in practice: plain libm, element by element.
        Activation::Elu(a) => x.iter_mut().for_each(|v| {
            if *v < 0.0 {
                *v = a * v.exp_m1();
            }
        }),
        Activation::Softplus => x.iter_mut().for_each(|v| {
            *v = if *v > 0.0 { *v + (-*v).exp().ln_1p() } else { v.exp().ln_1p() };
        }),
    }
}

/// Bounds pre-activations to [-limit, limit] (the `clip` attribute).
#[cfg_attr(not(debug_assertions), inline(always))]
pub(super) fn clip<S: Simd>(s: S, limit: f32, x: &mut [f32]) {
    let (lo, hi) = (s.splat_f32s(-limit), s.splat_f32s(limit));
    lanewise!(s, x, (), |v| s.min_f32s(hi, s.max_f32s(lo, v)));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Apply(Activation, Vec<f32>);

    impl WithSimd for Apply {
        type Output = Vec<f32>;
        #[inline(always)]
        fn with_simd<S: Simd>(mut self, s: S) -> Vec<f32> {
            activate(s, self.0, &mut self.1);
            self.1
        }
    }

    /// `act` over `xs` at every instruction set, checking that they all agree exactly except
    /// for the last bits of the FMA-contracted polynomials.
    fn run(act: Activation, xs: &[f32]) -> Vec<f32> {
        let results = at_every_level(|| Apply(act, xs.to_vec()));
        let (first, rest) = results.split_first().expect("scalar level");
        for other in rest {
            for ((x, a), b) in xs.iter().zip(first).zip(other) {
                let close = (a - b).abs() <= 4.0 * f32::EPSILON * a.abs().max(1e-30) || (a.is_nan() && b.is_nan());
                assert!(close, "{act:?}({x}): {a} at one level, {b} at another");
            }
        }
        results.last().cloned().unwrap_or_default()
    }

    /// Dense sweep of [-100, 100] plus the interesting points, against f64 libm.
    fn inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 5e-4).collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 1e-8, 0.549_999_9, 0.55, 0.550_000_1, 9.0, 20.0, 87.0, -87.0, 88.0, -88.0]);
        xs
    }

    fn check(act: Activation, reference: impl Fn(f64) -> f64) {
        let xs = inputs();
        let got = run(act, &xs);
        for (&x, &y) in xs.iter().zip(&got) {
            let want = reference(f64::from(x));
            if want.abs() < 1e-37 {
                assert!(f64::from(y).abs() < 1e-37, "{act:?}({x}) = {y}, want {want}");
                continue;
            }
            let rel = ((f64::from(y) - want) / want).abs();
            assert!(rel <= 1e-6, "{act:?}({x}) = {y}, want {want} (relative error {rel:e})");
        }
    }

    #[test]
    fn sigmoid_is_within_1e6_relative_of_libm() {
        check(Activation::Sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
    }

    #[test]
    fn tanh_is_within_1e6_relative_of_libm() {
        check(Activation::Tanh, f64::tanh);
        check(Activation::ScaledTanh(2.0, 0.5), |x| 2.0 * (0.5 * x).tanh());
    }

    #[test]
    fn nan_and_infinities_pass_through() {
        let got = run(Activation::Sigmoid, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        assert!(got[0].is_nan());
        assert_eq!(&got[1..], &[1.0, 0.0]);
        let got = run(Activation::Tanh, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        assert!(got[0].is_nan());
        assert_eq!(&got[1..], &[1.0, -1.0]);
    }

    #[test]
    fn piecewise_activations_match_their_definitions() {
        let xs = [-3.0f32, -0.5, 0.0, 0.25, 2.0];
        let cases: [(Activation, fn(f32) -> f32); 8] = [
            (Activation::Relu, |x| x.max(0.0)),
            (Activation::LeakyRelu(0.1), |x| if x < 0.0 { 0.1 * x } else { x }),
            (Activation::ThresholdedRelu(0.3), |x| if x > 0.3 { x } else { 0.0 }),
            (Activation::HardSigmoid(0.2, 0.5), |x| (0.2 * x + 0.5).clamp(0.0, 1.0)),
            (Activation::Affine(2.0, -1.0), |x| 2.0 * x - 1.0),
            (Activation::Elu(1.5), |x| if x < 0.0 { 1.5 * (x.exp() - 1.0) } else { x }),
            (Activation::Softsign, |x| x / (1.0 + x.abs())),
            (Activation::Softplus, |x| (1.0 + x.exp()).ln()),
        ];
        for (act, f) in cases {
            for (x, y) in xs.iter().zip(run(act, &xs)) {
                assert!((y - f(*x)).abs() <= 1e-6, "{act:?}({x}) = {y}, want {}", f(*x));
            }
        }
    }

    #[test]
    fn alpha_and_beta_are_consumed_in_order_of_the_functions_that_take_them() {
        let names: Vec<String> = ["Tanh", "LeakyRelu", "hardsigmoid", "Affine"].map(String::from).to_vec();
        let acts = Activation::parse_list(&names, &[0.3, 0.4], &[0.6]).expect("valid");
        assert_eq!(
            acts,
            vec![Activation::Tanh, Activation::LeakyRelu(0.3), Activation::HardSigmoid(0.4, 0.6), Activation::Affine(1.0, 0.0)]
        );
        let err = Activation::parse_list(&["Gelu".to_string()], &[], &[]).expect_err("unsupported");
        assert!(err.contains("Gelu"), "{err}");
    }
}
