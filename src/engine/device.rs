//! `--device`: which candle device runs the models.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use super::LoadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// `cuda:N`, the N-th visible GPU.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| "expected cpu, cuda or cuda:N".to_string()),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device once at start-up; a CUDA request on a build without the `cuda` feature
    /// (or without a usable GPU) fails here, before any model loads.
    pub fn open(self) -> Result<Device, LoadError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => open_cuda(ordinal),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device, LoadError> {
    Device::new_cuda(ordinal).map_err(|e| LoadError::Invalid(format!("cannot open cuda:{ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device, LoadError> {
    Err(LoadError::Invalid(format!(
        "--device=cuda:{ordinal} needs a build with CUDA support (cargo build --release --features cuda); this binary is CPU-only"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(DeviceSpec::Cuda(0).open().unwrap_err().to_string().contains("features cuda"));
    }
}
