# Sourced by test.sh and demo.sh: install the Debian packages Warren needs,
# if missing. Needs root (every Warren machine runs as root).
#   warren_install_deps        build + lab: what ./demo.sh needs
#   warren_install_deps test   also an OpenSSH server (the ssh:// repo test
#                              runs its own sshd; the system one is not started),
#                              and openssl + curl (the RouterOS simulator's
#                              certificate, an independent REST client; ping
#                              for the simulated router's /ping)
warren_install_deps() {
    local need=() p pkgs
    # Build: libgit2's https/ssh transports need OpenSSL. Lab: WireGuard
    # (userspace), nftables, iproute2, git.
    pkgs="nftables iptables iproute2 wireguard-go wireguard-tools git ca-certificates libssl-dev pkg-config openssh-client"
    [ "${1:-}" = test ] && pkgs="$pkgs openssh-server openssl curl iputils-ping"
    # The Helm chart test (scripts/chart-test.sh) makes a Python venv.
    [ "${1:-}" = test ] && pkgs="$pkgs python3-venv"
    # The container image test (tests/tests/image.rs, scripts/build-image.sh):
    # podman with runc (crun refuses hybrid cgroup hosts), debootstrap for the base.
    [ "${1:-}" = test ] && pkgs="$pkgs podman runc debootstrap"
    # The Debian packages' test (tests/tests/debs.rs): dpkg-shlibdeps, strip,
    # lintian, systemd-analyze.
    [ "${1:-}" = test ] && pkgs="$pkgs dpkg-dev binutils lintian systemd"
    for p in $pkgs; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if ((${#need[@]})); then
        echo "== installing Debian packages: ${need[*]}"
        apt-get update -qq
        # Do not start services (sshd) while installing: policy-rc.d says no.
        local policy=/usr/sbin/policy-rc.d made=
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
        [ -n "$made" ] && rm -f "$policy"
    fi
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; return 1; }
}
