//! W3C Trace Context from a request's `traceparent`/`tracestate` values, so a client's trace
//! continues into the server.
//!
//! Parsed here rather than with the SDK's propagator, which accepts ids shorter than the
//! specification's fixed widths (and so would continue a different trace than the client's).

use std::str::FromStr;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

/// The context a request span starts in: the client's span when `traceparent` is valid, else
/// an empty context, which makes the request span a new root. A malformed header is the
/// client's problem and must never fail or slow the request, so it is silently ignored, and
/// so is a malformed `tracestate` (the parent is kept without it).
pub(super) fn parent(traceparent: Option<&str>, tracestate: Option<&str>) -> Context {
    let Some(remote) = traceparent.and_then(|header| parse_traceparent(header.trim())) else {
        return Context::new();
    };
    let (trace_id, span_id, flags) = remote;
    let state = tracestate.and_then(|s| TraceState::from_str(s.trim()).ok()).unwrap_or_default();
    Context::new().with_remote_span_context(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// `version-traceid-parentid-flags`, lowercase hex of widths 2-32-16-2. Versions above 00 may
/// append `-` and more fields, which are ignored as the specification asks; ff is invalid.
/// Works on bytes so that no input, however odd, can split a character.
fn parse_traceparent(header: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let b = header.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = hex(&b[..2])?;
    let exact = version == 0 && b.len() == 55;
    let extended = version != 0 && version != 0xff && (b.len() == 55 || b[55] == b'-');
    if !(exact || extended) {
        return None;
    }
    let trace_id = TraceId::from(hex(&b[3..35])?);
    let span_id = SpanId::from(u64::try_from(hex(&b[36..52])?).ok()?);
    let flags = TraceFlags::new(u8::try_from(hex(&b[53..55])?).ok()?);
    (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some((trace_id, span_id, flags))
}

/// Lowercase hex only (the specification's HEXDIGLC); callers pass at most 32 digits, so the
/// value cannot overflow.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u128::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};

    use super::*;

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_valid_traceparent_becomes_the_remote_parent() {
        let cx = parent(Some(TRACEPARENT), Some("vendor=abc,other=1"));
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id(), TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex"));
        assert_eq!(sc.span_id(), SpanId::from_hex("b7ad6b7169203331").expect("hex"));
        assert_eq!(sc.trace_state().get("vendor"), Some("abc"));
    }

    #[test]
    fn no_or_malformed_traceparent_gives_no_parent() {
        for header in [
            None,
            Some(""),
            Some("garbage"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"),
            Some("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            Some("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01"),
            Some("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
            Some("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"),
            Some("00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("\u{00e9}-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("00-0af7651916cd43dd8448eb211c8031\u{00e9}-b7ad6b7169203331-01"),
            Some("00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g"),
            Some("0\u{00e9}0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\u{00e9}"),
        ] {
            assert!(!parent(header, Some("vendor=abc")).span().span_context().is_valid(), "{header:?}");
        }
    }

    #[test]
    fn later_versions_may_append_fields_and_flags_are_kept() {
        let cx = parent(Some("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-future"), None);
        let span = cx.span();
        assert!(span.span_context().is_valid() && !span.span_context().is_sampled());
        assert!(!parent(Some("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00future"), None).span().span_context().is_valid());
    }

    #[test]
    fn a_bad_tracestate_keeps_the_parent() {
        let cx = parent(Some(TRACEPARENT), Some("not a valid=tracestate=,,"));
        assert!(cx.span().span_context().is_valid());
    }
}
