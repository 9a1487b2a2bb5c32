//! The reader: one pass over the request bytes.

use std::borrow::Cow;
use std::fmt;

use super::{MAX_DEPTH, Value};

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
