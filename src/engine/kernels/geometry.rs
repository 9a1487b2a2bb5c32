//! Output size and padding of a 2-D window op (conv or pool) for a concrete input size, by
//! ONNX's rules for `pads`, `auto_pad` and `ceil_mode`.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Padding {
    /// `[top, left, bottom, right]`, ONNX's `pads` order for 2-D.
    Explicit([usize; 4]),
    /// SAME_UPPER (extra padding at the end) or SAME_LOWER (at the beginning).
    Same { upper: bool },
    Valid,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    pub(crate) kernel: [usize; 2],
    pub(crate) strides: [usize; 2],
    pub(crate) dilations: [usize; 2],
    pub(crate) padding: Padding,
    pub(crate) ceil_mode: bool,
}

/// A window resolved against an input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) out: [usize; 2],
    pub(crate) pad_begin: [usize; 2],
    pub(crate) pad_end: [usize; 2],
}

impl Window {
    pub(crate) fn resolve(&self, input: [usize; 2]) -> Result<Resolved, String> {
        let mut r = Resolved { out: [0; 2], pad_begin: [0; 2], pad_end: [0; 2] };
        for a in 0..2 {
            let (k, s, d, size) = (self.kernel[a], self.strides[a], self.dilations[a], input[a]);
            if k == 0 || s == 0 || d == 0 {
                return Err(format!("kernel, stride and dilation must be positive, got {k}, {s}, {d}"));
            }
            let span = d * (k - 1) + 1;
            let (begin, end) = match &self.padding {
                Padding::Explicit(p) => (p[a], p[a + 2]),
                Padding::Valid => (0, 0),
                Padding::Same { upper } => {
                    let out = size.div_ceil(s);
                    let total = ((out.saturating_sub(1)) * s + span).saturating_sub(size);
                    let small = total / 2;
                    if *upper { (small, total - small) } else { (total - small, small) }
                }
            };
            let padded = size + begin + end;
            if padded < span {
                return Err(format!(
                    "window of {span} (kernel {k}, dilation {d}) is larger than the padded input ({padded}) on spatial axis {a}"
                ));
            }
            let mut out = if self.ceil_mode { (padded - span).div_ceil(s) + 1 } else { (padded - span) / s + 1 };
            // ceil_mode may not start a window entirely inside the end padding
            if self.ceil_mode && (out - 1) * s >= size + begin {
                out -= 1;
            }
            r.out[a] = out;
            r.pad_begin[a] = begin;
            r.pad_end[a] = end;
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(kernel: usize, stride: usize, padding: Padding, ceil_mode: bool) -> Window {
        Window { kernel: [kernel; 2], strides: [stride; 2], dilations: [1; 2], padding, ceil_mode }
    }

    #[test]
    fn onnx_output_sizes() {
        assert_eq!(window(3, 1, Padding::Valid, false).resolve([28, 28]).map(|r| r.out), Ok([26, 26]));
        assert_eq!(window(2, 2, Padding::Valid, false).resolve([5, 5]).map(|r| r.out), Ok([2, 2]));
        assert_eq!(window(2, 2, Padding::Valid, true).resolve([5, 5]).map(|r| r.out), Ok([3, 3]));
        let same = window(3, 2, Padding::Same { upper: true }, false).resolve([5, 6]).expect("same");
        assert_eq!((same.out, same.pad_begin, same.pad_end), ([3, 3], [1, 0], [1, 1]));
        let lower = window(2, 1, Padding::Same { upper: false }, false).resolve([4, 4]).expect("lower");
        assert_eq!((lower.out, lower.pad_begin, lower.pad_end), ([4, 4], [1, 1], [0, 0]));
        assert!(window(5, 1, Padding::Valid, false).resolve([3, 3]).is_err());
    }
}
