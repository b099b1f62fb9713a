# Sourced by test.sh and demo.sh: install the Debian packages Warren's tests
# and lab need, if missing. Needs root (every Warren machine runs as root).
warren_install_deps() {
    local need=() p
    for p in nftables iproute2 wireguard-go wireguard-tools git ca-certificates; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if ((${#need[@]})); then
        echo "== installing Debian packages: ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; return 1; }
}
