//! Process CPU time from `/proc/PID/stat` (utime + stime, all threads, including exited ones),
//! sampled at the start and end of the measured phase. Divided by the requests in between this
//! is the server's CPU cost per request, the figure behind the "server overhead <= 20 us CPU per
//! request" target; the client's own CPU is sampled too because on a small machine the two
//! compete for the same cores.

use std::process::Command;
use std::time::Duration;

/// Clock ticks per second for `/proc` times: `getconf CLK_TCK` (no libc call: the crate forbids
/// unsafe code), else Linux's fixed USER_HZ of 100.
pub(crate) fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// CPU time (user + system) used so far by `pid` ("self" for this process).
pub(crate) fn process_cpu(pid: &str, ticks_per_second: u64) -> Result<Duration, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let ticks = parse_stat(&text).ok_or_else(|| format!("{path}: unexpected format"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64))
}

/// utime + stime (fields 14 and 15) in clock ticks. The command name (field 2) is in
/// parentheses and may itself contain spaces or parentheses, so fields are counted after the
/// last `)`.
fn parse_stat(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is fields[N - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU used by one process over the measured phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuUse {
    pub cpu: Duration,
    pub wall: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "4242 (candle (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 9 0 1234 1000 100 18446744073709551615";
        assert_eq!(parse_stat(line), Some(175));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_own_process() {
        assert!(process_cpu("self", ticks_per_second()).is_ok());
        assert!(process_cpu("999999999", 100).is_err());
    }
}
