#!/usr/bin/env bash
# Builds the Debian packages warren-agent and warren-controller with
# `dpkg-deb --build` from a staged tree (packaging/debian/ holds the control
# templates, maintainer scripts, conffile and tmpfiles.d entries).
#
#   scripts/build-debs.sh [--out DIR] [--bin-dir DIR]
#
#   --out DIR      where the .debs go (default target/debian)
#   --bin-dir DIR  package the binaries already in DIR instead of running
#                  `cargo build --release` (they are stripped either way)
#
# Man pages and shell completions come from each binary's hidden
# `generate-docs` subcommand (clap_mangen, clap_complete). Needs dpkg-dev
# (dpkg-shlibdeps) and binutils (strip). Prints one line per .deb.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/debian"
bindir=
while (($#)); do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --bin-dir) bindir=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "build-debs.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
umask 022
if [ -z "$bindir" ]; then
    (cd "$root" && cargo build --release --locked -p warren-agent -p warren-controller)
    bindir="$root/target/release"
fi
bindir=$(cd "$bindir" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

pkgdir="$root/packaging/debian"
upstream=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
[ -n "$upstream" ] || { echo "build-debs.sh: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
version="$upstream-1"
arch=$(dpkg --print-architecture)
# Reproducible: the date of the last commit (or now, outside git).
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$epoch
changedate=$(LC_ALL=C date -u -R -d "@$epoch")
work=$(mktemp -d "${TMPDIR:-/tmp}/warren-debs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The shared libraries a binary needs, as Debian dependencies (dpkg-shlibdeps
# wants a debian/control to look at: a minimal one).
shlibs() {
    local dir="$work/shlibs-$1"
    mkdir -p "$dir/debian"
    printf 'Source: warren\n\nPackage: %s\nArchitecture: any\n' "$1" > "$dir/debian/control"
    (cd "$dir" && dpkg-shlibdeps -O "-e$2" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}

subst() { # FILE PKG [extra sed args]: the template with the package's values
    local f=$1 pkg=$2
    shift 2
    sed -e "s|@PACKAGE@|$pkg|g" -e "s|@VERSION@|$version|g" -e "s|@ARCH@|$arch|g" "$@" "$f"
}

for pkg in warren-agent warren-controller; do
    src="$pkgdir/$pkg"
    st="$work/$pkg"
    bin="$bindir/$pkg"
    [ -x "$bin" ] || { echo "build-debs.sh: $bin is not built" >&2; exit 1; }

    install -d "$st/DEBIAN" "$st/usr/bin" "$st/lib/systemd/system" "$st/usr/lib/tmpfiles.d" \
        "$st/usr/share/man/man1" "$st/usr/share/doc/$pkg" \
        "$st/usr/share/bash-completion/completions" "$st/usr/share/zsh/vendor-completions" \
        "$st/usr/share/fish/vendor_completions.d"
    [ -f "$src/agent.toml" ] && install -d "$st/etc/warren"
    install -m 0755 "$bin" "$st/usr/bin/$pkg"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$st/usr/bin/$pkg"

    # The hardened unit from examples/systemd, with the packaged binary's path.
    sed 's|/usr/local/bin/|/usr/bin/|g' "$root/examples/systemd/$pkg.service" > "$st/lib/systemd/system/$pkg.service"
    chmod 0644 "$st/lib/systemd/system/$pkg.service"
    install -m 0644 "$src/tmpfiles.conf" "$st/usr/lib/tmpfiles.d/$pkg.conf"

    # Man pages and completions from the CLI itself.
    docs="$work/docs-$pkg"
    "$st/usr/bin/$pkg" generate-docs --out "$docs" >/dev/null
    for page in "$docs"/man/*.1; do
        gzip -9n < "$page" > "$st/usr/share/man/man1/$(basename "$page").gz"
    done
    install -m 0644 "$docs/completions/$pkg.bash" "$st/usr/share/bash-completion/completions/$pkg"
    install -m 0644 "$docs/completions/_$pkg" "$st/usr/share/zsh/vendor-completions/_$pkg"
    install -m 0644 "$docs/completions/$pkg.fish" "$st/usr/share/fish/vendor_completions.d/$pkg.fish"

    install -m 0644 "$pkgdir/copyright" "$st/usr/share/doc/$pkg/copyright"
    subst "$pkgdir/changelog.in" "$pkg" -e "s|@DATE@|$changedate|" | gzip -9n > "$st/usr/share/doc/$pkg/changelog.Debian.gz"
    chmod 0644 "$st/usr/share/doc/$pkg/changelog.Debian.gz"

    if [ -f "$src/lintian-overrides" ]; then
        install -d "$st/usr/share/lintian/overrides"
        install -m 0644 "$src/lintian-overrides" "$st/usr/share/lintian/overrides/$pkg"
    fi
    if [ -f "$src/agent.toml" ]; then
        install -m 0644 "$src/agent.toml" "$st/etc/warren/agent.toml"
    fi
    [ -f "$src/conffiles" ] && install -m 0644 "$src/conffiles" "$st/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
        case $script in
            postinst) part="$src/mkstate" ;;
            postrm) part="$src/rmstate" ;;
            *) part= ;;
        esac
        subst "$pkgdir/$script.in" "$pkg" > "$work/$script"
        if [ -n "$part" ]; then
            # Replace the @MKSTATE@/@RMSTATE@ line with the package's lines.
            sed -i -e "/@MKSTATE@\|@RMSTATE@/{r $part" -e 'd}' "$work/$script"
        fi
        install -m 0755 "$work/$script" "$st/DEBIAN/$script"
    done

    deps=$(shlibs "$pkg" "$st/usr/bin/$pkg")
    [ -n "$deps" ] || { echo "build-debs.sh: dpkg-shlibdeps found no libraries for $pkg" >&2; exit 1; }
    size=$(du -s -k --apparent-size --exclude=DEBIAN "$st" | cut -f1)
    subst "$src/control.in" "$pkg" -e "s|@SIZE@|$size|" -e "s|@SHLIBS@|$deps|" > "$st/DEBIAN/control"
    (cd "$st" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$st/DEBIAN/md5sums"
    chmod 0644 "$st/DEBIAN/md5sums" "$st/DEBIAN/control"

    deb="$out/${pkg}_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$st" "$deb" >/dev/null
    echo "$deb"
done
