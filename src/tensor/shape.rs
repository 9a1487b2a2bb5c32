use std::fmt;

use super::DType;

/// One dimension of a signature: fixed, or free (`-1` on the wire) such as the batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Dynamic,
}

impl Dim {
    pub fn matches(self, size: usize) -> bool {
        match self {
            Dim::Fixed(n) => n == size,
            Dim::Dynamic => true,
        }
    }

    /// The TF wire value: the size, or -1 when unknown.
    pub fn as_i64(self) -> i64 {
        match self {
            Dim::Fixed(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Dim::Dynamic => -1,
        }
    }
}

/// What a signature promises about one named input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The alias clients use as the map key (`inputs["image"]`).
    pub key: String,
    pub dtype: DType,
    /// `None` when the rank itself is unknown.
    pub shape: Option<Vec<Dim>>,
}

impl TensorSpec {
    pub fn accepts_shape(&self, dims: &[usize]) -> bool {
        match &self.shape {
            None => true,
            Some(spec) => spec.len() == dims.len() && spec.iter().zip(dims).all(|(d, &n)| d.matches(n)),
        }
    }

    pub fn shape_string(&self) -> String {
        match &self.shape {
            None => "<unknown rank>".to_string(),
            Some(dims) => {
                let parts: Vec<String> = dims.iter().map(|d| d.as_i64().to_string()).collect();
                format!("[{}]", parts.join(","))
            }
        }
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.key, self.dtype, self.shape_string())
    }
}

/// Number of elements of a shape, or `None` on overflow (a hostile shape must not wrap around).
pub fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

pub(crate) fn shape_string(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}
