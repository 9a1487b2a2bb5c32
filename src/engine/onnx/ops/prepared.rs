//! Per-node memo of tensors derived from an op's inputs (a reordered weight, a folded scale).
//! Builders cannot see initializers, but a constant input arrives as the same tensor on every
//! request (the plan's template holds it), so keying on tensor ids turns "derive every call"
//! into "derive once" for constants and stays correct for inputs that change.

use std::sync::Mutex;

use candle_core::{Tensor, TensorId};

use super::OpError;

#[derive(Default)]
pub(super) struct Prepared(Mutex<Option<(Vec<TensorId>, Vec<Tensor>)>>);

impl Prepared {
    /// Returns what `make` derives from `sources`, reusing the last result when the sources are
    /// the very same tensors as last time.
    pub(super) fn get(
        &self,
        sources: &[&Tensor],
        make: impl FnOnce() -> Result<Vec<Tensor>, OpError>,
    ) -> Result<Vec<Tensor>, OpError> {
        let ids: Vec<TensorId> = sources.iter().map(|t| t.id()).collect();
        {
            let memo = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((key, value)) = memo.as_ref() {
                if *key == ids {
                    return Ok(value.clone());
                }
            }
        }
        let value = make()?;
        let mut memo = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *memo = Some((ids, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use candle_core::{Device, Tensor};

    use super::Prepared;

    #[test]
    fn derives_once_per_source_and_again_when_the_source_changes() {
        let memo = Prepared::default();
        let calls = Cell::new(0);
        let derive = |t: &Tensor| {
            calls.set(calls.get() + 1);
            Ok(vec![t.affine(2.0, 0.0)?])
        };
        let a = Tensor::new(&[1f32, 2.0], &Device::Cpu).expect("a");
        let b = Tensor::new(&[1f32, 2.0], &Device::Cpu).expect("b"); // equal values, another tensor
        let first = memo.get(&[&a], || derive(&a)).expect("derive a");
        let again = memo.get(&[&a.clone()], || derive(&a)).expect("reuse a");
        assert_eq!(calls.get(), 1, "a clone of the same tensor reuses the derived value");
        assert_eq!(first[0].to_vec1::<f32>().expect("vec"), again[0].to_vec1::<f32>().expect("vec"));
        let other = memo.get(&[&b], || derive(&b)).expect("derive b");
        assert_eq!(calls.get(), 2, "a different tensor is derived afresh");
        assert_eq!(other[0].to_vec1::<f32>().expect("vec"), vec![2.0, 4.0]);
    }
}
