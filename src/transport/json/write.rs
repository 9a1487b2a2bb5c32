//! The writer: TF Serving's number formatting.

use std::fmt::{self, Write as _};

use super::Value;

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
