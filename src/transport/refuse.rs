//! Turning a connection away at `--max_connections` with an answer the client can read, rather
//! than a bare reset: HTTP/1 gets a 503 with a JSON error, HTTP/2 (gRPC) a GOAWAY whose debug
//! data says why. A TLS port cannot answer in plaintext, so there the connection is just closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Refusals being answered at once; past this, new ones are closed without an answer so that
/// refusing can never itself hold many descriptors.
const MAX_ANSWERING: usize = 64;
/// How long a refused client gets to show which protocol it speaks.
const SNIFF_TIMEOUT: Duration = Duration::from_millis(500);

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MESSAGE: &str = "connection limit reached (--max_connections); retry later or on another replica";
/// HTTP/2 error code ENHANCE_YOUR_CALM.
const ENHANCE_YOUR_CALM: u32 = 0xb;

static ANSWERING: AtomicUsize = AtomicUsize::new(0);

pub(super) fn over_capacity(transport: &'static str, stream: TcpStream, tls: bool) {
    tracing::debug!(transport, "connection refused: --max_connections reached");
    if tls || ANSWERING.fetch_add(1, Ordering::AcqRel) >= MAX_ANSWERING {
        if !tls {
            ANSWERING.fetch_sub(1, Ordering::AcqRel);
        }
        return; // dropping the stream closes it
    }
    tokio::spawn(async move {
        let _ = tokio::time::timeout(SNIFF_TIMEOUT * 2, answer(stream)).await;
        ANSWERING.fetch_sub(1, Ordering::AcqRel);
    });
}

async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = [0u8; 24];
    let mut read = 0;
    let _ = tokio::time::timeout(SNIFF_TIMEOUT, async {
        while read < head.len() {
            match stream.read(&mut head[read..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            if !H2_PREFACE.starts_with(&head[..read]) {
                break;
            }
        }
    })
    .await;
    if read > 0 && H2_PREFACE.starts_with(&head[..read]) {
        stream.write_all(&goaway_frames()).await?;
    } else {
        stream.write_all(http1_503().as_bytes()).await?;
    }
    stream.shutdown().await
}

/// An empty SETTINGS frame (the server preface), then GOAWAY(last stream 0, ENHANCE_YOUR_CALM)
/// carrying the message as debug data.
fn goaway_frames() -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + 9 + 8 + MESSAGE.len());
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let len = 8 + MESSAGE.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x7, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    out.extend_from_slice(MESSAGE.as_bytes());
    out
}

fn http1_503() -> String {
    let body = format!("{{\"error\":\"{MESSAGE}\"}}");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_goaway_frame_is_well_formed() {
        let frames = goaway_frames();
        assert_eq!(&frames[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let goaway = &frames[9..];
        let len = (usize::from(goaway[0]) << 16) | (usize::from(goaway[1]) << 8) | usize::from(goaway[2]);
        assert_eq!(goaway[3], 0x7);
        assert_eq!(len, goaway.len() - 9);
        assert_eq!(&goaway[13..17], &ENHANCE_YOUR_CALM.to_be_bytes());
        assert!(goaway.ends_with(MESSAGE.as_bytes()));
    }

    #[test]
    fn the_503_has_a_matching_content_length() {
        let text = http1_503();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.contains("--max_connections"));
    }
}
