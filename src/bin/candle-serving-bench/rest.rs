//! REST target: `POST /v1/models/{m}:predict` with TF Serving's row format
//! (`{"instances": [...]}`), over a pool of keep-alive connections. A request takes an idle
//! connection or opens one, so the pool grows to the number of requests in flight, as a browser
//! or a TF Serving REST client library would.

use std::fmt::Write as _;
use std::sync::Mutex;

use crate::http::{self, Conn};
use crate::inputs::{NamedTensor, Payload, Values};
use crate::stats::Failure;

pub(crate) struct RestClient {
    addr: String,
    /// Complete request bytes, one per payload.
    requests: Vec<Vec<u8>>,
    idle: Mutex<Vec<Conn>>,
}

impl RestClient {
    pub(crate) fn new(addr: &str, model: &str, signature: Option<&str>, payloads: &[Payload]) -> RestClient {
        let path = format!("/v1/models/{model}:predict");
        let requests = payloads.iter().map(|p| http::request("POST", addr, &path, body(p, signature).as_bytes())).collect();
        RestClient { addr: addr.to_string(), requests, idle: Mutex::new(Vec::new()) }
    }

    /// Sends payload `seq % n`. A reused connection the server has meanwhile closed is retried
    /// once on a fresh one, since that is the client's doing, not a server failure.
    pub(crate) async fn call(&self, seq: u64) -> Result<(), Failure> {
        let request = &self.requests[(seq % self.requests.len() as u64) as usize];
        let pooled = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        let (mut conn, reused) = match pooled {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let response = match conn.send(request).await {
            Ok(r) => r,
            Err(_) if reused => {
                conn = self.connect().await?;
                conn.send(request).await.map_err(|e| Failure::new("io", &e.to_string()))?
            }
            Err(e) => return Err(Failure::new("io", &e.to_string())),
        };
        if response.keep_alive && let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        if response.status == 200 {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&response.body);
            Err(Failure::new(&format!("HTTP {}", response.status), text.trim()))
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        Conn::connect(&self.addr).await.map_err(|e| Failure::new("connect", &e.to_string()))
    }
}

/// `{"signature_name": ..., "instances": [row, ...]}`; a row is the input's value for one batch
/// element, or an object keyed by input name when the signature has several inputs.
pub(crate) fn body(payload: &Payload, signature: Option<&str>) -> String {
    let mut out = String::with_capacity(64 + payload.tensors.iter().map(|t| t.dims.iter().product::<usize>() * 12).sum::<usize>());
    out.push('{');
    if let Some(s) = signature {
        let _ = write!(out, "\"signature_name\":{},", serde_json::Value::from(s));
    }
    out.push_str("\"instances\":[");
    for row in 0..payload.batch {
        if row > 0 {
            out.push(',');
        }
        if let [only] = payload.tensors.as_slice() {
            write_row(&mut out, only, row);
        } else {
            out.push('{');
            for (i, t) in payload.tensors.iter().enumerate() {
                let _ = write!(out, "{}{}:", if i > 0 { "," } else { "" }, serde_json::Value::from(t.name.as_str()));
                write_row(&mut out, t, row);
            }
            out.push('}');
        }
    }
    out.push_str("]}");
    out
}

fn write_row(out: &mut String, t: &NamedTensor, row: usize) {
    let inner = t.dims.get(1..).unwrap_or(&[]);
    let len: usize = inner.iter().product();
    write_nested(out, &t.values, row * len, inner);
}

/// Writes `dims`-shaped nested arrays of the values starting at `start`.
fn write_nested(out: &mut String, v: &Values, start: usize, dims: &[usize]) {
    let Some((&n, rest)) = dims.split_first() else {
        write_value(out, v, start);
        return;
    };
    let stride: usize = rest.iter().product();
    out.push('[');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        write_nested(out, v, start + i * stride, rest);
    }
    out.push(']');
}

fn write_value(out: &mut String, v: &Values, i: usize) {
    let _ = match v {
        Values::F32(x) => write_float(out, x[i] as f64, x[i].is_finite().then(|| x[i].to_string())),
        Values::F64(x) => write_float(out, x[i], x[i].is_finite().then(|| x[i].to_string())),
        Values::I32(x) => write!(out, "{}", x[i]),
        Values::I64(x) => write!(out, "{}", x[i]),
    };
}

/// Finite floats as Rust's shortest round-trip text; NaN and infinities as the `NaN` /
/// `Infinity` tokens TF Serving's REST API accepts.
fn write_float(out: &mut String, x: f64, finite: Option<String>) -> std::fmt::Result {
    match finite {
        Some(s) => out.write_str(&s),
        None if x.is_nan() => out.write_str("NaN"),
        None if x > 0.0 => out.write_str("Infinity"),
        None => out.write_str("-Infinity"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, dims: Vec<usize>, values: Values) -> NamedTensor {
        NamedTensor { name: name.into(), dims, values }
    }

    #[test]
    fn row_format() {
        let p = Payload { tensors: vec![t("x", vec![2, 1, 2], Values::F32(vec![0.5, 1.0, f32::NAN, -2.0]))], batch: 2 };
        assert_eq!(body(&p, None), r#"{"instances":[[[0.5,1]],[[NaN,-2]]]}"#);
        let p = Payload {
            tensors: vec![t("a", vec![2], Values::I64(vec![1, 2])), t("b", vec![2, 1], Values::F64(vec![f64::INFINITY, 0.25]))],
            batch: 2,
        };
        assert_eq!(body(&p, Some("s")), r#"{"signature_name":"s","instances":[{"a":1,"b":[Infinity]},{"a":2,"b":[0.25]}]}"#);
    }
}
