//! Concatenation along an axis of contiguous values, as one parallel copy.
//!
//! DenseNet concatenates every layer's features onto all that came before, so its Concats copy
//! about as many bytes as its convs read; candle's `cat` does that on the calling thread, which
//! left the second core idle for a third of DenseNet's time. Seen from the axis, a contiguous
//! value is `rows` runs of `width` elements (`rows` = the product of the dims before the axis),
//! and the output row `r` is every part's row `r` side by side.

use rayon::prelude::*;

/// Below this many elements one thread copies faster than two can be started.
const PARALLEL_ELEMENTS: usize = 1 << 16;

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

#[cfg(test)]
mod tests {
    use super::*;

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
