#!/usr/bin/env bash
# Build the warren-controller container image (Containerfile) with podman,
# without any image registry: the Debian base is made here with debootstrap
# (cached as target/image/base-bookworm.tar) and `podman import`ed, and the
# controller binary is built on this machine (or given with --binary) and
# copied in by the Containerfile's `prebuilt` stage. The build runs with
# --network=none.
#
#   scripts/build-image.sh [--binary PATH] [--tag IMAGE] [--root DIR]
#
#   --binary PATH  the warren-controller to put in the image (default: build
#                  target/release/warren-controller with cargo)
#   --tag IMAGE    the image name (default localhost/warren-controller:VERSION)
#   --root DIR     podman's storage directory (default: podman's own); the
#                  test uses a throwaway one under target/
#   --runroot DIR  podman's run directory with --root (default
#                  /run/warren-podman-PID, removed at exit; podman wants at
#                  most 50 characters)
#   --mirror URL   the Debian mirror for debootstrap (default deb.debian.org)
#
# Needs root, podman and debootstrap (Debian: apt-get install podman debootstrap).
# Prints the image name on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

binary= tag= root= runroot= mirror=http://deb.debian.org/debian
while (($#)); do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --root) root=$2; shift 2 ;;
        --runroot) runroot=$2; shift 2 ;;
        --mirror) mirror=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--tag IMAGE] [--root DIR [--runroot DIR]] [--mirror URL]" >&2; exit 2 ;;
    esac
done
for tool in podman debootstrap; do
    command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install $tool)" >&2; exit 1; }
done

# What to remove on exit: a run directory made here, a half-made base.
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT
podman=(podman)
if [ -n "$root" ]; then
    # A private store: overlay if this kernel allows it here, else vfs.
    mkdir -p "$root"
    if [ -z "$runroot" ]; then
        runroot=/run/warren-podman-$$
        cleanup+=("$runroot")
    fi
    driver=${WARREN_PODMAN_DRIVER:-overlay}
    podman=(podman --root "$root" --runroot "$runroot" --storage-driver "$driver"
            --cgroup-manager cgroupfs --events-backend file)
fi

t0=$SECONDS
mkdir -p target/image
base_tar=target/image/base-bookworm.tar
if [ ! -s "$base_tar" ]; then
    echo "== debootstrap: a minimal Debian bookworm with ca-certificates, libssl3, zlib1g (cached as $base_tar)" >&2
    tmp=$(mktemp -d target/image/rootfs.XXXXXX)
    cleanup+=("$tmp" "$base_tar.part")
    debootstrap --variant=minbase --include=ca-certificates,libssl3,zlib1g \
        bookworm "$tmp" "$mirror" >&2
    # Leave out what only a running system has, and apt's caches.
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
    tar --numeric-owner -C "$tmp" -cf "$base_tar.part" .
    mv "$base_tar.part" "$base_tar"
    rm -rf "$tmp"
    echo "== debootstrap took $((SECONDS - t0))s" >&2
fi
base=localhost/warren-base:bookworm
if ! "${podman[@]}" image exists "$base"; then
    "${podman[@]}" import --quiet "$base_tar" "$base" >/dev/null
fi

if [ -z "$binary" ]; then
    echo "== cargo build --release -p warren-controller" >&2
    cargo build --release --locked -p warren-controller >&2
    binary=target/release/warren-controller
fi
[ -x "$binary" ] || { echo "$binary: not an executable" >&2; exit 1; }
version=$("$binary" --version | awk '{ print $2 }')
[ -n "$tag" ] || tag=localhost/warren-controller:${version:-dev}

# The Containerfile's `prebuilt` stage copies this path (.containerignore
# lets only it through from target/).
mkdir -p target/image/bin
cp -f "$binary" target/image/bin/warren-controller
cleanup+=(target/image/bin/warren-controller)

# RUN steps in a chroot (no OCI runtime: crun refuses hybrid cgroup hosts,
# as some containers and CI machines are); they need no network, as the
# base has every package. WARREN_BUILD_ISOLATION=oci builds with
# --network=none instead.
if [ "${WARREN_BUILD_ISOLATION:-chroot}" = oci ]; then
    isolation=(--isolation=oci --network=none)
else
    isolation=(--isolation=chroot)
fi
echo "== podman build $tag (base $base, binary $binary)" >&2
t1=$SECONDS
"${podman[@]}" build "${isolation[@]}" \
    --build-arg BASE="$base" --build-arg BINARY_FROM=prebuilt \
    -f Containerfile -t "$tag" . >&2
echo "== built in $((SECONDS - t1))s (total $((SECONDS - t0))s)" >&2
echo "$tag"
