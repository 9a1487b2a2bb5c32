//! A small JSON reader and writer with TF Serving's dialect.
//!
//! Why our own: TF Serving's REST API (rapidjson with `kParseNanAndInfFlag`) accepts the bare
//! tokens `NaN`, `Infinity` and `-Infinity`, writes them back in responses, and distinguishes
//! JSON integers from decimals (an int32 input rejects `1.0`). serde_json does none of that.
//!
//! The parser works on the request bytes in place: strings without escapes borrow from the body,
//! numbers are converted as they are scanned, and nesting is capped at [`MAX_DEPTH`] so a hostile
//! body (`[[[[…`) cannot overflow the stack. Error texts follow rapidjson's English messages and
//! TF's `JSON Parse error: <message> at offset: <n>` wrapper, because clients grep for them.

mod parse;
mod write;

use std::borrow::Cow;
use std::fmt;

pub use parse::{ParseError, parse};
pub use write::{Writer, preview, write_f32, write_f64, write_string, write_value};

/// Deepest nesting of arrays and objects we accept. Real tensors rarely go past 6 levels (an
/// image batch is 4 deep inside the request object); 64 leaves room for odd shapes while
/// keeping the recursive parser's stack use trivially small.
pub const MAX_DEPTH: usize = 64;

/// A parsed JSON value. Strings and keys borrow from the input unless they contain escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// A JSON integer (no fraction, no exponent) that fits `i64`.
    Int(i64),
    /// A JSON integer above `i64::MAX` that still fits `u64` (rapidjson's `IsUint64`).
    Uint(u64),
    /// A number with a fraction or exponent, an integer beyond `u64`, or `NaN`/`Infinity`.
    Float(f64),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Members in document order; duplicates are kept and [`Value::get`] returns the first,
    /// as rapidjson's `FindMember` does.
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl<'a> Value<'a> {
    /// The member `key` of an object (the first one, if repeated); `None` for non-objects.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// rapidjson's type names, which TF Serving puts in its type errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Bool(false) => "False",
            Value::Bool(true) => "True",
            Value::Int(_) | Value::Uint(_) | Value::Float(_) => "Number",
            Value::String(_) => "String",
            Value::Array(_) => "Array",
            Value::Object(_) => "Object",
        }
    }

    /// Whether this is a JSON integer (as opposed to a decimal or a non-number).
    pub fn is_integer(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Uint(_))
    }

    /// Any JSON number as `f64` (integers beyond 2^53 round).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Uint(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Compact JSON text in TF's dialect (non-finite floats as bare tokens).
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_value(&mut out, self, usize::MAX);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_text(v: f32) -> String {
        let mut s = String::new();
        write_f32(&mut s, v);
        s
    }

    fn f64_text(v: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, v);
        s
    }

    fn error(input: &str) -> String {
        parse(input.as_bytes()).expect_err(input).to_string()
    }

    #[test]
    fn integers_and_decimals_stay_apart() {
        assert_eq!(parse(b"3").expect("int"), Value::Int(3));
        assert_eq!(parse(b"-0").expect("neg zero"), Value::Int(0));
        assert_eq!(parse(b"3.0").expect("decimal"), Value::Float(3.0));
        assert_eq!(parse(b"3e0").expect("exponent"), Value::Float(3.0));
        assert_eq!(parse(b"-9223372036854775808").expect("i64 min"), Value::Int(i64::MIN));
        assert_eq!(parse(b"18446744073709551615").expect("u64 max"), Value::Uint(u64::MAX));
        assert_eq!(parse(b"18446744073709551616").expect("beyond u64"), Value::Float(18446744073709551616.0));
        assert!(parse(b"1").expect("int").is_integer());
        assert!(!parse(b"1.5").expect("float").is_integer());
    }

    #[test]
    fn nan_and_infinity_tokens() {
        let v = parse(b"[NaN, Infinity, -Infinity, Inf, -Inf, -NaN]").expect("tokens");
        let items = v.as_array().expect("array");
        assert!(matches!(items[0], Value::Float(f) if f.is_nan()));
        assert_eq!(items[1..5], [
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY)
        ]);
        assert!(matches!(items[5], Value::Float(f) if f.is_nan()));
        assert_eq!(error("[Nan]"), "JSON Parse error: Invalid value. at offset: 1");
        assert_eq!(v.to_string(), "[NaN,Infinity,-Infinity,Infinity,-Infinity,NaN]");
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let v = parse(br#"{"plain": "abc", "esc": "a\"b\\c\n\u00e9\ud83d\ude00/"}"#).expect("strings");
        assert!(matches!(v.get("plain"), Some(Value::String(Cow::Borrowed("abc")))));
        assert_eq!(v.get("esc").and_then(Value::as_str), Some("a\"b\\c\né😀/"));
        let mut out = String::new();
        write_string(&mut out, "q\"\\\n\u{1}é");
        assert_eq!(out, r#""q\"\\\n\u0001é""#);
        assert_eq!(parse(out.as_bytes()).expect("round trip").as_str(), Some("q\"\\\n\u{1}é"));
    }

    #[test]
    fn errors_read_like_rapidjson() {
        assert_eq!(error(""), "JSON Parse error: The document is empty");
        assert_eq!(error("  \n"), "JSON Parse error: The document is empty. at offset: 3");
        assert_eq!(error("{\"a\": }"), "JSON Parse error: Invalid value. at offset: 6");
        assert_eq!(error("[1 2]"), "JSON Parse error: Missing a comma or ']' after an array element. at offset: 3");
        assert_eq!(error("{\"a\" 1}"), "JSON Parse error: Missing a colon after a name of object member. at offset: 5");
        assert_eq!(error("{\"a\": 1,}"), "JSON Parse error: Missing a name for object member. at offset: 8");
        assert_eq!(error("{\"a\": 1 \"b\"}"), "JSON Parse error: Missing a comma or '}' after an object member. at offset: 8");
        assert_eq!(error("{} x"), "JSON Parse error: The document root must not be followed by other values. at offset: 3");
        assert_eq!(error("\"abc"), "JSON Parse error: Missing a closing quotation mark in string. at offset: 4");
        assert_eq!(error("\"\\x\""), "JSON Parse error: Invalid escape character in string. at offset: 2");
        assert_eq!(error("1."), "JSON Parse error: Miss fraction part in number. at offset: 2");
        assert_eq!(error("1e"), "JSON Parse error: Miss exponent in number. at offset: 2");
        assert_eq!(error("1e400"), "JSON Parse error: Number too big to be stored in double. at offset: 0");
        assert_eq!(error("-"), "JSON Parse error: Invalid value. at offset: 0");
        assert_eq!(error("tru"), "JSON Parse error: Invalid value. at offset: 0");
        assert_eq!(
            parse(b"[\"\xff\"]").expect_err("utf8").to_string(),
            "JSON Parse error: Invalid encoding in string. at offset: 2"
        );
    }

    #[test]
    fn nesting_depth_is_capped() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            parse(deep.as_bytes()).expect_err("too deep").to_string(),
            format!("JSON Parse error: Nesting is deeper than 64 levels. at offset: {MAX_DEPTH}")
        );
        // A hostile body far deeper than the stack could take recursively still fails cleanly.
        let hostile = "[".repeat(1_000_000);
        assert!(parse(hostile.as_bytes()).is_err());
        let objects = "{\"a\":".repeat(MAX_DEPTH + 1);
        assert!(parse(objects.as_bytes()).expect_err("objects").message.contains("deeper"));
    }

    #[test]
    fn floats_print_like_tf() {
        assert_eq!(f32_text(3.0), "3.0");
        assert_eq!(f32_text(-0.0), "-0.0");
        assert_eq!(f32_text(0.1), "0.1");
        assert_eq!(f32_text(0.2), "0.2");
        assert_eq!(f32_text(1e-7), "1e-07");
        assert_eq!(f32_text(0.0001), "0.0001");
        assert_eq!(f32_text(0.00003), "3e-05");
        assert_eq!(f32_text(123456.0), "123456.0");
        assert_eq!(f32_text(9_000_000.0), "9e+06");
        assert_eq!(f32_text(1234567.0), "1234567.0");
        assert_eq!(f32_text(0.123_456_79), "0.12345679");
        assert_eq!(f32_text(f32::MAX), "3.4028235e+38");
        assert_eq!(f32_text(f32::NAN), "NaN");
        assert_eq!(f32_text(f32::NEG_INFINITY), "-Infinity");
        assert_eq!(f64_text(123456789.0), "123456789.0");
        assert_eq!(f64_text(1e100), "1e+100");
        assert_eq!(f64_text(-2.5e-300), "-2.5e-300");
        assert_eq!(f64_text(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(f64_text(f64::INFINITY), "Infinity");
    }

    #[test]
    fn floats_round_trip() {
        let samples_f32 = [1e-7f32, 0.1, 1.0 / 3.0, 6.02e23, f32::MIN_POSITIVE, 1e-45, 16_777_217.0, -123.456];
        for v in samples_f32 {
            let text = f32_text(v);
            let back = parse(text.as_bytes()).expect(&text).as_f64().expect("number") as f32;
            assert_eq!(back.to_bits(), v.to_bits(), "{text}");
            assert!(!parse(text.as_bytes()).expect(&text).is_integer(), "{text} must read back as a decimal");
        }
        let samples_f64 = [1e-7, 0.1, 1.0 / 3.0, 6.02e23, f64::MIN_POSITIVE, 5e-324, f64::MAX, 9007199254740993.0];
        for v in samples_f64 {
            let text = f64_text(v);
            assert_eq!(parse(text.as_bytes()).expect(&text).as_f64(), Some(v), "{text}");
        }
    }

    #[test]
    fn writer_places_commas() {
        let mut w = Writer::new();
        w.begin_object().key("a").begin_array().string("x").bool(true).raw(|o| write_f32(o, 2.0)).end_array();
        w.key("b").begin_object().end_object().key("c").string("").end_object();
        assert_eq!(w.finish(), r#"{"a":["x",true,2.0],"b":{},"c":""}"#);
    }

    #[test]
    fn previews_are_bounded() {
        let big = format!("[{}0]", "1,".repeat(10_000));
        let v = parse(big.as_bytes()).expect("big");
        let p = preview(&v);
        assert!(p.len() < 300 && p.ends_with("..."), "{p}");
    }
}
