//! The v2 protocol's datatype names. BYTES is a v2 type with no engine counterpart: it is
//! recognised so that a request carrying it is refused with a message naming what the model
//! takes, instead of "unknown datatype".

use crate::tensor::DType;

pub const BYTES: &str = "BYTES";

pub fn name(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "BOOL",
        DType::U8 => "UINT8",
        DType::U16 => "UINT16",
        DType::U32 => "UINT32",
        DType::U64 => "UINT64",
        DType::I8 => "INT8",
        DType::I16 => "INT16",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::F16 => "FP16",
        DType::BF16 => "BF16",
        DType::F32 => "FP32",
        DType::F64 => "FP64",
    }
}

/// `None` for a name that is not an engine type (BYTES, or not a v2 datatype at all).
pub fn parse(name: &str) -> Option<DType> {
    DType::ALL.into_iter().find(|&d| self::name(d) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for dtype in DType::ALL {
            assert_eq!(parse(name(dtype)), Some(dtype));
        }
        assert_eq!(parse(BYTES), None);
        assert_eq!(parse("fp32"), None, "names are case-sensitive, as in the protocol");
    }
}
