#!/usr/bin/env bash
# Figures, not a test: the agent's stripped binary size and its idle RSS
# (daemon running, nothing to do) in a throwaway network namespace.
# Usage: scripts/footprint.sh   (root; builds the release binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p warren-agent -p warren-controller
agent=target/release/warren-agent
tmp=$(mktemp -d)
ns="warren-fp-$$"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; ip netns del "$ns" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
key=$(target/release/warren-controller keygen --out "$tmp/controller.key")
cat > "$tmp/agent.toml" <<TOML
host = "gateway"
state_dir = "$tmp/state"
trusted_controller_keys = ["$key"]
TOML
ip netns add "$ns"
ip netns exec "$ns" "$agent" --config "$tmp/agent.toml" run 2>/dev/null &
pid=$!
sleep 3
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
printf 'warren-agent %s\n' "$($agent --version | awk '{print $2}')"
printf '  stripped binary: %s bytes (%s KiB)\n' "$(stat -c %s $agent)" "$(( $(stat -c %s $agent) / 1024 ))"
printf '  idle RSS:        %s KiB (daemon running, no plan, after 3 s)\n' "$rss"
printf '  linked libraries: %s\n' "$(ldd $agent | awk '{print $1}' | tr '\n' ' ')"
