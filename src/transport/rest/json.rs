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

use std::borrow::Cow;
use std::fmt::{self, Write as _};

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

/// A syntax error, located by byte offset like rapidjson reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// rapidjson's English message (`GetParseError_En`).
    pub message: &'static str,
    /// Byte offset into the body; `None` only for an empty body, which TF reports without one.
    pub offset: Option<usize>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            None => write!(f, "JSON Parse error: {}", self.message),
            Some(offset) => write!(f, "JSON Parse error: {} at offset: {offset}", self.message),
        }
    }
}

impl std::error::Error for ParseError {}

const EMPTY: &str = "The document is empty.";
const INVALID_VALUE: &str = "Invalid value.";
const ROOT_NOT_SINGULAR: &str = "The document root must not be followed by other values.";
const MISS_NAME: &str = "Missing a name for object member.";
const MISS_COLON: &str = "Missing a colon after a name of object member.";
const MISS_COMMA_OR_CURLY: &str = "Missing a comma or '}' after an object member.";
const MISS_COMMA_OR_BRACKET: &str = "Missing a comma or ']' after an array element.";
const BAD_HEX: &str = "Incorrect hex digit after \\u escape in string.";
const BAD_SURROGATE: &str = "The surrogate pair in string is invalid.";
const BAD_ESCAPE: &str = "Invalid escape character in string.";
const MISS_QUOTE: &str = "Missing a closing quotation mark in string.";
const BAD_ENCODING: &str = "Invalid encoding in string.";
const TOO_BIG: &str = "Number too big to be stored in double.";
const MISS_FRACTION: &str = "Miss fraction part in number.";
const MISS_EXPONENT: &str = "Miss exponent in number.";
const TOO_DEEP: &str = "Nesting is deeper than 64 levels.";

/// Parses one JSON document. Leading and trailing whitespace is allowed; anything else after
/// the root value is an error.
pub fn parse(input: &[u8]) -> Result<Value<'_>, ParseError> {
    if input.is_empty() {
        // TF checks this itself before rapidjson runs, hence no period and no offset.
        return Err(ParseError { message: "The document is empty", offset: None });
    }
    // Validating UTF-8 once up front lets every later slice be a `&str` without re-checking;
    // all cuts happen at ASCII delimiters, so they land on character boundaries.
    let text = std::str::from_utf8(input)
        .map_err(|e| ParseError { message: BAD_ENCODING, offset: Some(e.valid_up_to()) })?;
    let mut parser = Parser { text, bytes: input, pos: 0 };
    parser.skip_ws();
    if parser.pos == input.len() {
        return Err(parser.error(EMPTY));
    }
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != input.len() {
        return Err(parser.error(ROOT_NOT_SINGULAR));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, message: &'static str) -> ParseError {
        ParseError { message, offset: Some(self.pos) }
    }

    fn error_at(&self, message: &'static str, offset: usize) -> ParseError {
        ParseError { message, offset: Some(offset) }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// Consumes `word` if the input continues with it.
    fn eat(&mut self, word: &str) -> bool {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// `depth` counts the arrays and objects enclosing this value.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') if self.eat("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(Value::Bool(false)),
            Some(b'n') if self.eat("null") => Ok(Value::Null),
            Some(b'-' | b'0'..=b'9' | b'N' | b'I') => self.number(),
            _ => Err(self.error(INVALID_VALUE)),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), ParseError> {
        if depth > MAX_DEPTH { Err(self.error(TOO_DEEP)) } else { Ok(()) }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        self.check_depth(depth)?;
        self.pos += 1;
        self.skip_ws();
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error(MISS_COMMA_OR_BRACKET)),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        self.check_depth(depth)?;
        self.pos += 1;
        self.skip_ws();
        let mut members = Vec::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error(MISS_NAME));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error(MISS_COLON));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error(MISS_COMMA_OR_CURLY)),
            }
        }
    }

    /// A string starting at the opening quote. Borrowed when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.error(MISS_QUOTE)),
                Some(b'"') => {
                    let s = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(0) => return Err(self.error(MISS_QUOTE)),
                Some(c) if c < 0x20 => return Err(self.error(BAD_ENCODING)),
                Some(_) => self.pos += 1,
            }
        }
        let mut owned = String::with_capacity(self.pos - start + 16);
        owned.push_str(&self.text[start..self.pos]);
        loop {
            match self.peek() {
                None | Some(0) => return Err(self.error(MISS_QUOTE)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    let escape_at = self.pos;
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            owned.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return Err(self.error_at(BAD_ESCAPE, escape_at + 1)),
                    };
                    owned.push(c);
                    self.pos += 1;
                }
                Some(c) if c < 0x20 => return Err(self.error(BAD_ENCODING)),
                Some(_) => {
                    // Copy the run up to the next quote, backslash or control byte at once.
                    let run_start = self.pos;
                    while let Some(c) = self.peek() {
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        self.pos += 1;
                    }
                    owned.push_str(&self.text[run_start..self.pos]);
                }
            }
        }
    }

    /// The code point of `\uXXXX` (positioned after the `u`), joining surrogate pairs.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.eat("\\u") {
                return Err(self.error(BAD_SURROGATE));
            }
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.error(BAD_SURROGATE));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..0xE000).contains(&high) {
            return Err(self.error(BAD_SURROGATE));
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error(BAD_SURROGATE))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = self.peek().and_then(|b| (b as char).to_digit(16)).ok_or_else(|| self.error(BAD_HEX))?;
            code = code * 16 + digit;
            self.pos += 1;
        }
        Ok(code)
    }

    /// JSON's number grammar plus rapidjson's `NaN`, `Inf` and `Infinity` (optionally negated).
    fn number(&mut self) -> Result<Value<'a>, ParseError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'N') => {
                return if self.eat("NaN") { Ok(Value::Float(f64::NAN)) } else { Err(self.error_at(INVALID_VALUE, start)) };
            }
            Some(b'I') => {
                if !self.eat("Inf") {
                    return Err(self.error_at(INVALID_VALUE, start));
                }
                self.eat("inity");
                return Ok(Value::Float(if negative { f64::NEG_INFINITY } else { f64::INFINITY }));
            }
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
            _ => return Err(self.error_at(INVALID_VALUE, start)),
        }
        let int_end = self.pos;
        let mut decimal = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error(MISS_FRACTION));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
            decimal = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error(MISS_EXPONENT));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
            decimal = true;
        }
        if !decimal {
            let digits = &self.bytes[start + usize::from(negative)..int_end];
            if let Some(value) = integer(digits, negative) {
                return Ok(value);
            }
        }
        // Decimals and integers too large for 64 bits, as rapidjson stores them: a double.
        let text = &self.text[start..self.pos];
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Value::Float(v)),
            _ => Err(self.error_at(TOO_BIG, start)),
        }
    }
}

/// The integer value of ASCII `digits`, or `None` when it does not fit 64 bits.
fn integer(digits: &[u8], negative: bool) -> Option<Value<'static>> {
    let mut magnitude: u64 = 0;
    for &d in digits {
        magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // -0 stays an integer zero: a JSON integer for an int input, and 0.0 for a float one.
        0i64.checked_sub_unsigned(magnitude).map(Value::Int)
    } else if let Ok(v) = i64::try_from(magnitude) {
        Some(Value::Int(v))
    } else {
        Some(Value::Uint(magnitude))
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Appends `s` as a JSON string literal.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            c if c < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[run_start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

/// Appends an `f32` the way TF Serving prints floats (see [`write_f64`]).
pub fn write_f32(out: &mut String, v: f32) {
    if !v.is_finite() {
        return write_non_finite(out, v.is_nan(), v.is_sign_negative());
    }
    let mut buf = [0u8; 48];
    let text = sci(&mut buf, format_args!("{v:e}"));
    layout(out, text, 9);
}

/// Appends an `f64` the way TF Serving prints decimals: the shortest text that reads back as
/// the same value, laid out like C's `%g` (scientific below 1e-4 and from 1e6 on, or from
/// 10^max_digits10 when more than six digits are needed), `.0` appended to whole numbers so
/// consumers keep them as decimals, and `NaN`/`Infinity`/`-Infinity` as bare tokens.
pub fn write_f64(out: &mut String, v: f64) {
    if !v.is_finite() {
        return write_non_finite(out, v.is_nan(), v.is_sign_negative());
    }
    let mut buf = [0u8; 48];
    let text = sci(&mut buf, format_args!("{v:e}"));
    layout(out, text, 17);
}

fn write_non_finite(out: &mut String, nan: bool, negative: bool) {
    out.push_str(match (nan, negative) {
        (true, _) => "NaN",
        (false, true) => "-Infinity",
        (false, false) => "Infinity",
    });
}

/// Formats into a stack buffer: the writer runs once per output element, so no allocation.
fn sci<'b>(buf: &'b mut [u8; 48], args: fmt::Arguments<'_>) -> &'b str {
    struct Cursor<'c> {
        buf: &'c mut [u8; 48],
        len: usize,
    }
    impl fmt::Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }
    let mut cursor = Cursor { buf, len: 0 };
    // Shortest `{:e}` output of a finite f64 is at most ~25 bytes, so this cannot fail.
    let _ = cursor.write_fmt(args);
    let len = cursor.len;
    std::str::from_utf8(&buf[..len]).unwrap_or("0e0")
}

/// Lays out Rust's shortest scientific text (`-1.2345e-7`) in `%g` style.
fn layout(out: &mut String, sci: &str, max_digits10: i32) {
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (head, tail) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let n_digits = (head.len() + tail.len()) as i32;
    // TF tries `%g` (6 significant digits) and falls back to `%.{max_digits10}g` when six digits
    // do not round-trip; the precision decides where scientific notation starts.
    let precision = if n_digits <= 6 { 6 } else { max_digits10 };
    if negative {
        out.push('-');
    }
    let digit = |i: i32| -> char {
        let i = i as usize;
        if i < head.len() { head.as_bytes()[i] as char } else { tail.as_bytes()[i - head.len()] as char }
    };
    if exponent < -4 || exponent >= precision {
        out.push(digit(0));
        if n_digits > 1 {
            out.push('.');
            (1..n_digits).for_each(|i| out.push(digit(i)));
        }
        let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs());
    } else if exponent >= 0 {
        let int_len = exponent + 1;
        (0..int_len).for_each(|i| out.push(if i < n_digits { digit(i) } else { '0' }));
        out.push('.');
        if n_digits > int_len {
            (int_len..n_digits).for_each(|i| out.push(digit(i)));
        } else {
            out.push('0');
        }
    } else {
        out.push_str("0.");
        (0..(-exponent - 1)).for_each(|_| out.push('0'));
        (0..n_digits).for_each(|i| out.push(digit(i)));
    }
}

/// Appends `value` as compact JSON, stopping (with `...`) once `out` grows past `limit` bytes.
/// Error messages quote request values this way without copying a huge payload into them.
pub fn write_value(out: &mut String, value: &Value<'_>, limit: usize) {
    if out.len() > limit {
        return;
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => write_f64(out, *f),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if out.len() > limit {
                    out.push_str("...");
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, limit);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if out.len() > limit {
                    out.push_str("...");
                    return;
                }
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item, limit);
            }
            out.push('}');
        }
    }
}

/// A short rendering of `value` for error messages.
pub fn preview(value: &Value<'_>) -> String {
    const PREVIEW_BYTES: usize = 200;
    let mut out = String::new();
    write_value(&mut out, value, PREVIEW_BYTES);
    out
}

/// Builds compact JSON with commas placed automatically, for the responses whose shape is
/// fixed by the API (status, metadata, predictions), where a value tree would be wasted work.
pub struct Writer {
    out: String,
    /// One entry per open container: `true` until its first element is written.
    first: Vec<bool>,
    /// A key was just written, so the next value needs no separator.
    after_key: bool,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    pub fn with_capacity(bytes: usize) -> Self {
        Self { out: String::with_capacity(bytes), first: vec![true], after_key: false }
    }

    /// The separator before a new element of the current container.
    fn element(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if let Some(first) = self.first.last_mut() {
            if !*first {
                self.out.push(',');
            }
            *first = false;
        }
    }

    pub fn begin_object(&mut self) -> &mut Self {
        self.element();
        self.out.push('{');
        self.first.push(true);
        self
    }

    pub fn end_object(&mut self) -> &mut Self {
        self.out.push('}');
        self.first.pop();
        self
    }

    pub fn begin_array(&mut self) -> &mut Self {
        self.element();
        self.out.push('[');
        self.first.push(true);
        self
    }

    pub fn end_array(&mut self) -> &mut Self {
        self.out.push(']');
        self.first.pop();
        self
    }

    /// An object key; the next value written belongs to it.
    pub fn key(&mut self, key: &str) -> &mut Self {
        self.element();
        write_string(&mut self.out, key);
        self.out.push(':');
        self.after_key = true;
        self
    }

    pub fn string(&mut self, s: &str) -> &mut Self {
        self.element();
        write_string(&mut self.out, s);
        self
    }

    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.element();
        self.out.push_str(if b { "true" } else { "false" });
        self
    }

    /// One value written by `f` straight into the buffer (tensor data, numbers).
    pub fn raw(&mut self, f: impl FnOnce(&mut String)) -> &mut Self {
        self.element();
        f(&mut self.out);
        self
    }

    pub fn finish(self) -> String {
        self.out
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
