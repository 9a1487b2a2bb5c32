//! `cargo deny` against deny.toml, through tests/supply_chain.sh (which installs the pinned
//! cargo-deny when missing and skips the advisories, with a message, where the RustSec
//! database is unreachable).

use std::process::Command;

#[test]
fn cargo_deny_passes_licenses_bans_and_sources() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash").arg(format!("{root}/tests/supply_chain.sh")).output().expect("run tests/supply_chain.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture, and on failure: what was checked and what was skipped.
    eprintln!("{stderr}");
    assert!(out.status.success(), "tests/supply_chain.sh failed ({}):\n{stderr}", out.status);
}
