//! Data movement as one parallel copy: concatenation along an axis, ShuffleNet's channel
//! shuffle over NHWC pixels, and the NCHW <-> NHWC transposes at a network's edges. candle does
//! all of them on the calling thread, the transposes through a general strided copy.
//!
//! DenseNet concatenates every layer's features onto all that came before, so its Concats copy
//! about as many bytes as its convs read; candle's `cat` does that on the calling thread, which
//! left the second core idle for a third of DenseNet's time. Seen from the axis, a contiguous
//! value is `rows` runs of `width` elements (`rows` = the product of the dims before the axis),
//! and the output row `r` is every part's row `r` side by side.

use rayon::prelude::*;

use super::output::{Number, filled};

/// Elementwise and copy kernels split across threads from this many values (512 KiB of f32)
/// up. Handed from a sleeping pool, a fork and join cost tens of microseconds on a VM, as
/// long as copying a few hundred KiB, and ShuffleNet's small ops at batch 1 ran slower split.
/// Within a model run the pool's other thread now spins between ops (`threads::on_pool`) and
/// picks a fork up in a few microseconds, and at 4 MiB (the earlier threshold) every one of
/// DenseNet121's Concats and BN-ReLU scale-shifts at batch 1 stayed on one thread: 6.6 of its
/// 41 ms, with the second thread idle.
pub(crate) const PARALLEL_ELEMENTS: usize = 1 << 17;

/// Joins `parts[i]` (`rows` runs of `widths[i]` elements each) row by row.
pub(crate) fn concat_rows<T: Number>(parts: &[&[T]], widths: &[usize], rows: usize, threads: usize) -> Vec<T> {
    assert_eq!(parts.len(), widths.len(), "one width per part");
    assert!(parts.iter().zip(widths).all(|(p, &w)| p.len() == rows * w), "a part's length is not rows x width");
    let width: usize = widths.iter().sum();
    if width == 0 {
        return Vec::new();
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
    // every row is written whole, part after part
    write_rows(rows, width, threads, copy_rows)
}

/// A fresh `rows x width` output written by `write(first, block)`, which writes every value of
/// `block`: whole rows from row `first` on. One call on one thread, or a few blocks of rows per
/// thread from [`PARALLEL_ELEMENTS`] values up.
fn write_rows<T: Number>(rows: usize, width: usize, threads: usize, write: impl Fn(usize, &mut [T]) + Sync) -> Vec<T> {
    filled(rows * width, |out| {
        if threads > 1 && out.len() >= PARALLEL_ELEMENTS && rows > 1 {
            let per_task = rows.div_ceil(threads * 4);
            out.par_chunks_mut(per_task * width).enumerate().for_each(|(i, block)| write(i * per_task, block));
        } else {
            write(0, out);
        }
    })
}

/// Constant padding of a contiguous `dims` tensor by `pads[d] = (before, after)` cells per
/// axis, filled with `value`. The axes after the last padded one are one block: an NHWC
/// feature map padded in H and W copies whole pixels, one output row (a padded image row) at
/// a time. Keras' `ZeroPadding2D` before a pool went through candle's `cat`, once per padded
/// axis: 0.7-1.3 ms for DenseNet121's 112 x 112 x 64 map, against a single copy here.
pub(crate) fn pad_constant<T: Number>(x: &[T], dims: &[usize], pads: &[(usize, usize)], value: T, threads: usize) -> Vec<T> {
    assert_eq!(dims.len(), pads.len(), "one (before, after) pair per axis");
    assert_eq!(x.len(), dims.iter().product::<usize>(), "pad input is not {dims:?}");
    let out_dims: Vec<usize> = dims.iter().zip(pads).map(|(&d, &(b, e))| d + b + e).collect();
    let len: usize = out_dims.iter().product();
    let Some(last) = pads.iter().rposition(|&(b, e)| b + e > 0) else { return x.to_vec() };
    if len == 0 {
        return Vec::new();
    }
    let block: usize = dims[last + 1..].iter().product();
    let before = pads[last].0;
    let (in_row, out_row) = (dims[last] * block, out_dims[last] * block);
    // output row `r`: its coordinates on the axes before `last`, and the input row they read,
    // or None where one of them lies in the padding
    let source = |mut r: usize| -> Option<usize> {
        let (mut src, mut stride) = (0, 1);
        for d in (0..last).rev() {
            let (o, (b, _)) = (r % out_dims[d], pads[d]);
            r /= out_dims[d];
            let i = o.checked_sub(b).filter(|&i| i < dims[d])?;
            src += i * stride;
            stride *= dims[d];
        }
        Some(src)
    };
    let write = |first: usize, rows: &mut [T]| {
        for (i, row) in rows.chunks_exact_mut(out_row).enumerate() {
            match source(first + i) {
                None => row.fill(value),
                Some(src) => {
                    let (head, rest) = row.split_at_mut(before * block);
                    let (middle, tail) = rest.split_at_mut(in_row);
                    head.fill(value);
                    middle.copy_from_slice(&x[src * in_row..(src + 1) * in_row]);
                    tail.fill(value);
                }
            }
        }
    };
    // every output row is written whole: filled, or padding around an input row
    write_rows(len / out_row, out_row, threads, write)
}

/// A fresh output of `x`'s length written by `f(src, dst)` over runs of whole pixels of
/// `channels` values each: one call on one thread, or blocks of pixels across the threads from
/// [`PARALLEL_ELEMENTS`] values up. `f` writes every value of `dst` (it is not zeroed first).
pub(crate) fn map_pixels<T: Sync, U: Number>(x: &[T], channels: usize, threads: usize, f: impl Fn(&[T], &mut [U]) + Sync) -> Vec<U> {
    let pixels = x.len().checked_div(channels).unwrap_or(0);
    filled(x.len(), |out| {
        if threads > 1 && x.len() >= PARALLEL_ELEMENTS && pixels > 1 {
            let block = pixels.div_ceil(threads * 4) * channels;
            out.par_chunks_mut(block).zip(x.par_chunks(block)).for_each(|(dst, src)| f(src, dst));
        } else {
            f(x, out);
        }
    })
}

/// ShuffleNet's channel shuffle over `x` as pixels of `channels` values: within each pixel,
/// channel `i * (channels / group) + j` moves to `j * group + i`.
pub(crate) fn shuffle_channels<T: Number>(x: &[T], channels: usize, group: usize, threads: usize) -> Vec<T> {
    assert!(group > 0 && channels.is_multiple_of(group) && x.len().is_multiple_of(channels.max(1)), "shuffle of {channels} channels into {group} groups");
    if channels == 0 {
        return Vec::new();
    }
    map_pixels(x, channels, threads, |src, dst| {
        let pixels = src.chunks_exact(channels).zip(dst.chunks_exact_mut(channels));
        match group {
            // A pixel's shuffle weaves its `group` runs into one (ShuffleNet uses 2, 3, 4 and
            // 8), compiled per group count: the destination is written in order, with no index
            // to check per value. The scattered stores of the general loop, one bounds check
            // each, ran at about 1 ns per value (0.4 ms for a 56x56x112 shuffle).
            2 => pixels.for_each(|(s, d)| interleave::<T, 2>(s, channels / 2, 0, d)),
            3 => pixels.for_each(|(s, d)| interleave::<T, 3>(s, channels / 3, 0, d)),
            4 => pixels.for_each(|(s, d)| interleave::<T, 4>(s, channels / 4, 0, d)),
            8 => pixels.for_each(|(s, d)| interleave::<T, 8>(s, channels / 8, 0, d)),
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

/// The `[batch, rows, cols]` view under which the transpose of a contiguous `dims` by `perm` is
/// `out[b][c][r] = in[b][r][c]`, if it has one. Axes of size 1 are dropped and axes that stay
/// neighbours in the same order are merged: NCHW -> NHWC (`[0, 2, 3, 1]`) is
/// `[N, C, H * W]`, NHWC -> NCHW `[N, H * W, C]`. `None` for other permutations and for those
/// that move nothing.
pub(crate) fn batched_swap(dims: &[usize], perm: &[usize]) -> Option<[usize; 3]> {
    let mut seen = vec![false; dims.len()];
    if perm.len() != dims.len() || !perm.iter().all(|&p| p < dims.len() && !std::mem::replace(&mut seen[p], true)) {
        return None;
    }
    // the moved axes in output order, as runs of input axes that stay adjacent
    let kept: Vec<usize> = perm.iter().copied().filter(|&p| dims[p] != 1).collect();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &axis in &kept {
        match runs.last_mut() {
            Some((_, end)) if (*end + 1..axis).all(|a| dims[a] == 1) && axis > *end => *end = axis,
            _ => runs.push((axis, axis)),
        }
    }
    let size = |&(first, last): &(usize, usize)| -> usize { dims[first..=last].iter().product() };
    match runs[..] {
        [first, second] if second.0 < first.0 => Some([1, size(&second), size(&first)]),
        [outer, first, second] if outer.1 < second.0 && second.1 < first.0 => Some([size(&outer), size(&second), size(&first)]),
        _ => None,
    }
}

/// `out[b][c][r] = x[b][r][c]` for `x` of `batch` planes of `rows x cols`, in tiles that keep
/// the lines they read in L1, or as `R`-way interleaves for 1-4 rows (an RGB image's channels
/// into its pixels). Parallel over output lines from [`PARALLEL_ELEMENTS`] values up.
pub(crate) fn transpose_batched<T: Number>(x: &[T], [batch, rows, cols]: [usize; 3], threads: usize) -> Vec<T> {
    assert_eq!(x.len(), batch * rows * cols, "transpose of {batch} x {rows} x {cols} values");
    if x.is_empty() {
        return Vec::new();
    }
    let plane = rows * cols;
    // output lines `first..` (line `b * cols + c` holds plane b's column c) into `block`
    let write = |first: usize, block: &mut [T]| {
        let mut line = first;
        let mut rest = block;
        while !rest.is_empty() {
            let (b, c0) = (line / cols, line % cols);
            let count = (cols - c0).min(rest.len() / rows);
            let (here, tail) = rest.split_at_mut(count * rows);
            transpose_plane(&x[b * plane..(b + 1) * plane], rows, cols, c0, here);
            line += count;
            rest = tail;
        }
    };
    // every output line is one input column
    filled(x.len(), |out| {
        if threads > 1 && x.len() >= PARALLEL_ELEMENTS {
            let lines = batch * cols;
            let per_task = lines.div_ceil(threads * 4);
            out.par_chunks_mut(per_task * rows).enumerate().for_each(|(i, block)| write(i * per_task, block));
        } else {
            write(0, out);
        }
    })
}

/// Columns `c0..` of one `rows x cols` plane as rows of `out` (`out.len() / rows` of them).
fn transpose_plane<T: Copy>(x: &[T], rows: usize, cols: usize, c0: usize, out: &mut [T]) {
    match rows {
        1 => out.copy_from_slice(&x[c0..c0 + out.len()]),
        2 => interleave::<T, 2>(x, cols, c0, out),
        3 => interleave::<T, 3>(x, cols, c0, out),
        4 => interleave::<T, 4>(x, cols, c0, out),
        _ => {
            /// A 32 x 32 f32 tile reads 32 lines of 128 bytes, 4 KiB that stay in L1 while
            /// each is read 32 times over.
            const TILE: usize = 32;
            let width = out.len() / rows;
            for r0 in (0..rows).step_by(TILE) {
                let r1 = (r0 + TILE).min(rows);
                for j0 in (0..width).step_by(TILE) {
                    for j in j0..(j0 + TILE).min(width) {
                        let dst = &mut out[j * rows + r0..j * rows + r1];
                        for (r, d) in (r0..r1).zip(dst) {
                            *d = x[r * cols + c0 + j];
                        }
                    }
                }
            }
        }
    }
}

/// `R` rows woven into one: output line `j` is `x[0][c0 + j], .., x[R - 1][c0 + j]`. A small
/// transpose's plane, and one pixel of a channel shuffle (its `R` groups of channels).
fn interleave<T: Copy, const R: usize>(x: &[T], cols: usize, c0: usize, out: &mut [T]) {
    let width = out.len() / R;
    let lines: [&[T]; R] = std::array::from_fn(|r| &x[r * cols + c0..][..width]);
    for (j, dst) in out.chunks_exact_mut(R).enumerate() {
        for (d, line) in dst.iter_mut().zip(&lines) {
            *d = line[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition, per output element: padding on inner, outer and several axes,
    /// none at all, and empty axes, on one and two threads.
    #[test]
    fn constant_padding_surrounds_the_input() {
        let cases: [(&[usize], &[(usize, usize)]); 6] = [
            (&[1, 5, 4, 3], &[(0, 0), (1, 1), (2, 1), (0, 0)]),
            (&[2, 3], &[(1, 0), (0, 2)]),
            (&[3, 2, 2], &[(0, 0), (0, 0), (0, 0)]),
            (&[4], &[(3, 2)]),
            (&[2, 0, 3], &[(1, 1), (1, 0), (0, 1)]),
            (&[2, 300, 300, 2], &[(0, 1), (2, 2), (1, 3), (0, 0)]),
        ];
        for (dims, pads) in cases {
            let x: Vec<u32> = (1..=dims.iter().product::<usize>() as u32).collect();
            let out_dims: Vec<usize> = dims.iter().zip(pads).map(|(&d, &(b, e))| d + b + e).collect();
            let mut want = Vec::new();
            for flat in 0..out_dims.iter().product::<usize>() {
                let (mut rest, mut src, mut inside) = (flat, 0, true);
                let mut stride = 1;
                for d in (0..dims.len()).rev() {
                    let o = rest % out_dims[d];
                    rest /= out_dims[d];
                    match o.checked_sub(pads[d].0).filter(|&i| i < dims[d]) {
                        Some(i) => src += i * stride,
                        None => inside = false,
                    }
                    stride *= dims[d];
                }
                want.push(if inside { x[src] } else { 0 });
            }
            for threads in [1, 2] {
                assert_eq!(pad_constant(&x, dims, pads, 0, threads), want, "{dims:?} padded by {pads:?} on {threads} threads");
            }
        }
    }

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

    /// Every merged form the layout pass and exporters produce, and the ones that are not a
    /// swap of two blocks.
    #[test]
    fn batched_swaps_merge_neighbouring_axes() {
        assert_eq!(batched_swap(&[2, 3, 4, 5], &[0, 2, 3, 1]), Some([2, 3, 20]));
        assert_eq!(batched_swap(&[2, 4, 5, 3], &[0, 3, 1, 2]), Some([2, 20, 3]));
        assert_eq!(batched_swap(&[1, 3, 4, 5], &[0, 2, 3, 1]), Some([1, 3, 20]));
        assert_eq!(batched_swap(&[6, 7], &[1, 0]), Some([1, 6, 7]));
        assert_eq!(batched_swap(&[2, 1, 4, 5], &[0, 2, 3, 1]), None, "only a size-1 axis moves");
        assert_eq!(batched_swap(&[2, 3, 4], &[0, 1, 2]), None);
        assert_eq!(batched_swap(&[2, 3, 4], &[2, 0, 1]), Some([1, 6, 4]));
        assert_eq!(batched_swap(&[2, 3, 4, 5], &[0, 2, 1, 3]), None, "the last axis stays: not a plane swap");
        assert_eq!(batched_swap(&[2, 3, 4, 5], &[3, 2, 1, 0]), None);
        assert_eq!(batched_swap(&[2, 3, 4], &[2, 2, 0]), None, "not a permutation");
    }

    /// Against the index definition, for 1-4 rows (the interleaves), tall tiles with ragged
    /// edges, and the parallel path.
    #[test]
    fn transposes_swap_rows_and_columns_of_each_plane() {
        for &(batch, rows, cols) in &[(1, 3, 7), (2, 1, 5), (2, 2, 33), (3, 4, 9), (2, 37, 70), (1, 64, 65), (2, 3, 300_000), (4, 300, 1000)] {
            let x: Vec<u32> = (0..(batch * rows * cols) as u32).collect();
            for threads in [1, 2] {
                let got = transpose_batched(&x, [batch, rows, cols], threads);
                for b in 0..batch {
                    for r in 0..rows {
                        for c in 0..cols {
                            assert_eq!(got[(b * cols + c) * rows + r], x[(b * rows + r) * cols + c], "{batch} x {rows} x {cols}, threads {threads}");
                        }
                    }
                }
            }
        }
    }
}
