//! Local response normalisation across channels (AlexNet, GoogLeNet / Inception v1) over NHWC
//! pixels.
//!
//! In NCHW each output needs `size` values `H*W` floats apart, which is why the generic op
//! runs as a padded copy of the squares and `size` shifted adds over the whole tensor. In NHWC a
//! pixel's channel window is one short run: the squares of a pixel stay in L1, the window sums
//! are `size` vector adds per pixel, and the network around the op needs no transposes.

use super::movement::map_pixels;

/// `y[c] = x[c] / (bias + alpha / size * sum of x[j]^2)^beta`, `j` running from
/// `c - floor((size - 1) / 2)` to `c + ceil((size - 1) / 2)` within the pixel (ONNX's LRN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Lrn {
    pub(crate) alpha: f32,
    pub(crate) beta: f32,
    pub(crate) bias: f32,
    pub(crate) size: usize,
}

impl Lrn {
    /// `x` is whole pixels of `channels` values each.
    pub(crate) fn run(&self, x: &[f32], channels: usize, threads: usize) -> Vec<f32> {
        assert!(self.size >= 1 && x.len().is_multiple_of(channels.max(1)), "LRN of size {} over pixels of {channels} channels", self.size);
        if channels == 0 {
            return Vec::new();
        }
        map_pixels(x, channels, threads, |src, dst| {
            let mut sums = vec![0.0f32; channels];
            let mut squares = vec![0.0f32; channels];
            for (x, y) in src.chunks_exact(channels).zip(dst.chunks_exact_mut(channels)) {
                self.pixel(x, y, &mut squares, &mut sums);
            }
        })
    }

    fn pixel(&self, x: &[f32], y: &mut [f32], squares: &mut [f32], sums: &mut [f32]) {
        let channels = x.len();
        let before = (self.size - 1) / 2;
        squares.iter_mut().zip(x).for_each(|(s, v)| *s = v * v);
        sums.fill(0.0);
        // offset `d` of the window adds x[c + d - before]^2 to every c it reaches, in the order
        // the generic op adds its shifted copies
        for d in 0..self.size {
            let (from, to) = (before.saturating_sub(d), (channels + before).saturating_sub(d).min(channels));
            if from >= to {
                continue;
            }
            let shift = from + d - before;
            sums[from..to].iter_mut().zip(&squares[shift..shift + (to - from)]).for_each(|(s, q)| *s += q);
        }
        let scale = self.alpha / self.size as f32;
        if self.beta == 0.75 {
            // every published LRN network uses 0.75: d^0.75 = sqrt(d) * sqrt(sqrt(d)), two
            // vector square roots instead of a scalar powf per value
            for ((y, x), s) in y.iter_mut().zip(x).zip(sums.iter()) {
                let root = (self.bias + scale * s).sqrt();
                *y = x / (root * root.sqrt());
            }
        } else {
            for ((y, x), s) in y.iter_mut().zip(x).zip(sums.iter()) {
                *y = x / (self.bias + scale * s).powf(self.beta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition in float64, straight from the formula.
    fn reference(lrn: &Lrn, x: &[f32], channels: usize) -> Vec<f64> {
        let before = (lrn.size - 1) / 2;
        let after = lrn.size - 1 - before;
        x.chunks_exact(channels)
            .flat_map(|px| {
                (0..channels).map(move |c| {
                    let lo = c.saturating_sub(before);
                    let hi = (c + after).min(channels - 1);
                    let sum: f64 = px[lo..=hi].iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                    let d = f64::from(lrn.bias) + f64::from(lrn.alpha) / lrn.size as f64 * sum;
                    f64::from(px[c]) / d.powf(f64::from(lrn.beta))
                })
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_for_every_window_and_exponent() {
        for channels in [1, 2, 3, 7, 16, 64, 193] {
            for size in [1, 2, 3, 4, 5, 9, 300] {
                for (alpha, beta, bias) in [(1e-4, 0.75, 1.0), (2e-5, 0.75, 2.0), (0.5, 0.6, 1.5), (3.0, 1.0, 0.5)] {
                    let lrn = Lrn { alpha, beta, bias, size };
                    let pixels = 37;
                    let x: Vec<f32> = (0..pixels * channels).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
                    let want = reference(&lrn, &x, channels);
                    for threads in [1, 2] {
                        let got = lrn.run(&x, channels, threads);
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            let err = (f64::from(*g) - w).abs() / w.abs().max(1e-6);
                            assert!(err < 2e-6, "{lrn:?} {channels} channels, {threads} threads, at {i}: {g} vs {w}");
                        }
                    }
                }
            }
        }
    }
}
