//! Data movement as one parallel copy: concatenation along an axis, and ShuffleNet's channel
//! shuffle over NHWC pixels. candle does both on the calling thread.
//!
//! DenseNet concatenates every layer's features onto all that came before, so its Concats copy
//! about as many bytes as its convs read; candle's `cat` does that on the calling thread, which
//! left the second core idle for a third of DenseNet's time. Seen from the axis, a contiguous
//! value is `rows` runs of `width` elements (`rows` = the product of the dims before the axis),
//! and the output row `r` is every part's row `r` side by side.

use rayon::prelude::*;

/// Elementwise and copy kernels split across threads from this many values (4 MiB of f32) up.
/// A fork and join costs tens of microseconds on a VM, as long as copying a few hundred KiB:
/// below this, ShuffleNet's many small ops at batch 1 ran slower on two threads than on one.
pub(crate) const PARALLEL_ELEMENTS: usize = 1 << 20;

/// Joins `parts[i]` (`rows` runs of `widths[i]` elements each) row by row.
pub(crate) fn concat_rows<T: Copy + Default + Send + Sync>(parts: &[&[T]], widths: &[usize], rows: usize, threads: usize) -> Vec<T> {
    assert_eq!(parts.len(), widths.len(), "one width per part");
    assert!(parts.iter().zip(widths).all(|(p, &w)| p.len() == rows * w), "a part's length is not rows x width");
    let width: usize = widths.iter().sum();
    let mut out = vec![T::default(); rows * width];
    if width == 0 {
        return out;
    }
    let copy_rows = |first: usize, block: &mut [T]| {
        for (r, row) in block.chunks_exact_mut(width).enumerate() {
            let mut at = 0;
            for (part, &w) in parts.iter().zip(widths) {
                row[at..at + w].copy_from_slice(&part[(first + r) * w..(first + r + 1) * w]);
                at += w;
            }
        }
    };
    if threads > 1 && out.len() >= PARALLEL_ELEMENTS && rows > 1 {
        let rows_per_task = rows.div_ceil(threads * 4);
        out.par_chunks_mut(rows_per_task * width).enumerate().for_each(|(i, block)| copy_rows(i * rows_per_task, block));
    } else {
        copy_rows(0, &mut out);
    }
    out
}

/// A fresh output of `x`'s length written by `f(src, dst)` over runs of whole pixels of
/// `channels` values each: one call on one thread, or blocks of pixels across the threads from
/// [`PARALLEL_ELEMENTS`] values up.
pub(crate) fn map_pixels<T: Sync, U: Copy + Default + Send>(x: &[T], channels: usize, threads: usize, f: impl Fn(&[T], &mut [U]) + Sync) -> Vec<U> {
    let mut out = vec![U::default(); x.len()];
    let pixels = x.len().checked_div(channels).unwrap_or(0);
    if threads > 1 && x.len() >= PARALLEL_ELEMENTS && pixels > 1 {
        let block = pixels.div_ceil(threads * 4) * channels;
        out.par_chunks_mut(block).zip(x.par_chunks(block)).for_each(|(dst, src)| f(src, dst));
    } else {
        f(x, &mut out);
    }
    out
}

/// ShuffleNet's channel shuffle over `x` as pixels of `channels` values: within each pixel,
/// channel `i * (channels / group) + j` moves to `j * group + i`.
pub(crate) fn shuffle_channels<T: Copy + Default + Send + Sync>(x: &[T], channels: usize, group: usize, threads: usize) -> Vec<T> {
    assert!(group > 0 && channels.is_multiple_of(group) && x.len().is_multiple_of(channels.max(1)), "shuffle of {channels} channels into {group} groups");
    if channels == 0 {
        return vec![T::default(); x.len()];
    }
    map_pixels(x, channels, threads, |src, dst| {
        let pixels = src.chunks_exact(channels).zip(dst.chunks_exact_mut(channels));
        match group {
            2 => pixels.for_each(|(s, d)| shuffle_pixel::<T, 2>(s, d)),
            3 => pixels.for_each(|(s, d)| shuffle_pixel::<T, 3>(s, d)),
            4 => pixels.for_each(|(s, d)| shuffle_pixel::<T, 4>(s, d)),
            8 => pixels.for_each(|(s, d)| shuffle_pixel::<T, 8>(s, d)),
            _ => {
                let per_group = channels / group;
                for (s, d) in pixels {
                    for (i, run) in s.chunks_exact(per_group).enumerate() {
                        for (j, &v) in run.iter().enumerate() {
                            d[j * group + i] = v;
                        }
                    }
                }
            }
        }
    })
}

/// One pixel's shuffle with the group count known when compiling (ShuffleNet uses 2, 3, 4 and
/// 8): the destination is written in order, `G` values at a time, each from its own source run,
/// with no index to check per value. The scattered stores of the general loop, one bounds check
/// each, ran at about 1 ns per value (0.4 ms for a 56x56x112 shuffle).
fn shuffle_pixel<T: Copy, const G: usize>(s: &[T], d: &mut [T]) {
    let per = s.len() / G;
    let runs: [&[T]; G] = std::array::from_fn(|i| &s[i * per..][..per]);
    for (j, out) in d.chunks_exact_mut(G).take(per).enumerate() {
        for (o, run) in out.iter_mut().zip(&runs) {
            *o = run[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_shuffle_moves_channel_i_j_to_j_i() {
        for &(pixels, channels, group) in &[(1, 6, 2), (5, 12, 3), (3000, 48, 4), (4, 0, 1), (7, 40, 8), (9, 30, 5), (2, 8, 8)] {
            let x: Vec<u32> = (0..(pixels * channels) as u32).collect();
            for threads in [1, 2] {
                let got = shuffle_channels(&x, channels, group, threads);
                for p in 0..pixels {
                    for i in 0..group {
                        for j in 0..channels / group {
                            let (from, to) = (p * channels + i * (channels / group) + j, p * channels + j * group + i);
                            assert_eq!(got[to], x[from], "pixels {pixels}, channels {channels}, group {group}, threads {threads}");
                        }
                    }
                }
            }
        }
    }

    /// Every shape class (one row, wide rows, a zero-width part, the parallel path) against the
    /// definition, element by element.
    #[test]
    fn rows_are_the_parts_side_by_side() {
        for &(rows, ref widths) in &[(1, vec![3, 5]), (7, vec![1, 0, 4]), (4096, vec![32, 64, 16]), (3, vec![0, 0])] {
            let parts: Vec<Vec<u32>> = widths.iter().enumerate()
                .map(|(p, &w)| (0..rows * w).map(|i| (p * 1_000_000 + i) as u32).collect())
                .collect();
            let views: Vec<&[u32]> = parts.iter().map(Vec::as_slice).collect();
            for threads in [1, 2] {
                let got = concat_rows(&views, widths, rows, threads);
                let want: Vec<u32> = (0..rows)
                    .flat_map(|r| widths.iter().enumerate().flat_map(move |(p, &w)| (0..w).map(move |j| (p * 1_000_000 + r * w + j) as u32)))
                    .collect();
                assert_eq!(got, want, "rows {rows}, widths {widths:?}, threads {threads}");
            }
        }
    }
}
