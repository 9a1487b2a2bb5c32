#!/usr/bin/env bash
# Supply chain: `cargo deny` against deny.toml (licences, duplicate versions, banned crates,
# sources), then the RustSec advisories where the database can be fetched; where it cannot
# (as on this project's machines, which reach crates.io but not GitHub), that check is skipped
# with a message. Installs the pinned cargo-deny when it is missing. Exits non-zero on any
# finding. Run by tests/supply_chain.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_DENY_VERSION=0.20.2
ADVISORY_DB=https://github.com/rustsec/advisory-db

if [[ $(cargo deny --version 2>/dev/null) != "cargo-deny $CARGO_DENY_VERSION" ]]; then
  echo "supply_chain.sh: installing cargo-deny $CARGO_DENY_VERSION" >&2
  cargo install --quiet --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi

cargo deny --locked check licenses bans sources

if timeout 20 git ls-remote --exit-code "$ADVISORY_DB" HEAD >/dev/null 2>&1; then
  cargo deny --locked check advisories
else
  echo "supply_chain.sh: SKIPPED the advisories check: the RustSec database ($ADVISORY_DB) is not reachable from this machine" >&2
fi
