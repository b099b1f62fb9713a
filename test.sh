#!/usr/bin/env bash
# Warren's test command: what a new user runs, and what CI runs (.ci/run).
# Installs the Debian packages the tests need (as root), then checks
# formatting and lints, and runs every test, including the ones that load
# compiled nftables rulesets into a real kernel inside network namespaces.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
warren_install_deps test

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (the end-to-end tests run the agent and controller binaries)"
cargo build --workspace --locked --bins
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
echo "== figures (printed, not asserted): push-to-applied and throughput in the namespace lab"
target/debug/bench-push 5
# Fault injection (tests named fault_*, in tests/tests/faults_*.rs): each injects
# one real fault in the namespace lab and passes only if nothing was lost.
awk '/^test fault_[^ ]* \.\.\. / { n++; if ($NF == "ok") s++; else l++ }
     END { printf "faults: %d injected, %d survived, %d lost\n", n, s, l }' "$log"
# The closing line: totals of every cargo test binary above.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
