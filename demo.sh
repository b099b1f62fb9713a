#!/usr/bin/env bash
# Warren's main job on an embedded default: the seed network from the blog
# post (examples/seed). Today it validates the desired state and prints what
# Warren would build on each host; the live namespace lab with agents and a
# git push loop replaces this in a later milestone (see docs/status.md).
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh
warren_install_deps
cargo build --quiet --release -p warren-controller
wc=target/release/warren-controller

echo "== warren-controller validate examples/seed"
$wc validate examples/seed
echo
echo "== warren-controller plan examples/seed"
$wc plan examples/seed
echo
echo "== warren-controller client-config examples/seed phone"
$wc client-config examples/seed phone
cat <<'TXT'

Try next:
  - edit examples/seed/warren.yaml (e.g. add  blog: { port: 8080/tcp, to: 192.168.16.10 }
    under forwards:) and run  target/release/warren-controller plan examples/seed --host router
  - make a mistake on purpose (forward 2222/tcp, the gateway's SSH port) and run
    target/release/warren-controller validate examples/seed
  - target/release/warren-controller plan examples/seed --format json   (canonical plans and their sha256)
TXT
