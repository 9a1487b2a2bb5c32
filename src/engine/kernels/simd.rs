//! Runtime instruction-set dispatch for the kernels written once over pulp's `Simd` (depthwise
//! conv, the RNN cells).

use pulp::{Simd, WithSimd};

/// Runs `op` with the widest instruction set this CPU has among those compiled in: AVX-512,
/// then AVX2+FMA, then scalar code. Not `pulp::Arch`: its AVX2 level needs pulp's `x86-v3`
/// feature, which nothing here turns on, so on AVX2-only CPUs it picks scalar code.
pub(crate) fn dispatch<Op: WithSimd>(op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V4::try_new() {
        return Simd::vectorize(simd, op);
    }
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return Simd::vectorize(simd, op);
    }
    op.with_simd(pulp::Scalar::new())
}
