//! A minimal keep-alive HTTP/1.1 client over a tokio `TcpStream`: one request at a time per
//! connection, `Content-Length` bodies only. The crate's hyper has no client feature and reqwest
//! is a dev-dependency; a load generator needs nothing more than this, and its per-request cost
//! (one write, reads into a reused buffer) stays well below the server's.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted; a server sending more is broken or not HTTP.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// False when the server asked to close (`Connection: close`) or spoke HTTP/1.0.
    pub keep_alive: bool,
}

pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// The bytes of one request, built once per payload so that the load loop only writes them.
pub(crate) fn request(method: &str, host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Conn {
    pub(crate) async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(16 * 1024) })
    }

    /// Writes `request` (from [`request`]) and reads the whole response.
    pub(crate) async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        self.buf.clear();
        self.stream.write_all(request).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("response head too large"));
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| bad("response head is not text"))?;
        let (status, keep_alive, length) = parse_head(head)?;
        let total = head_end + length;
        while self.buf.len() < total {
            self.fill().await?;
        }
        let body = self.buf[head_end..total].to_vec();
        Ok(Response { status, body, keep_alive })
    }

    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(16 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        Ok(())
    }
}

/// (status, keep-alive, body length) from a response head.
fn parse_head(head: &str) -> io::Result<(u16, bool, usize)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad status line"))?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut length = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
            return Err(bad("chunked responses are not supported"));
        }
    }
    let length = match (length, status) {
        (Some(n), _) => n,
        (None, 100..=199 | 204 | 304) => 0,
        (None, _) => return Err(bad("response without Content-Length")),
    };
    Ok((status, keep_alive, length))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let h = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(parse_head(h).expect("head"), (200, true, 12));
        let h = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_head(h).expect("head"), (503, false, 0));
        assert!(parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head("HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head("garbage\r\n\r\n").is_err());
    }

    #[test]
    fn builds_requests() {
        let r = request("POST", "h:1", "/v1/models/m:predict", b"{}");
        assert_eq!(r, b"POST /v1/models/m:predict HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
    }
}
