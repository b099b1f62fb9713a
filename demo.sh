#!/usr/bin/env bash
# Warren's main job on an embedded default: the network from the blog post
# (examples/seed), built by Warren from a local git repo, live in network
# namespaces on this machine: controller, two agents, real WireGuard tunnels,
# nftables and policy routing. It prints how to try it, and tears everything
# down when you press Enter. Needs root (installs its Debian packages).
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
warren_install_deps
echo "== building Warren"
cargo build --quiet --workspace --bins
trap 'target/debug/warren-demo cleanup >/dev/null 2>&1 || true' INT TERM
target/debug/warren-demo
