#!/bin/sh
# Install buildwatch from a release tarball (`cargo xtask dist`): no Rust, LLVM or compiler
# needed, only coreutils, tar and gzip (and curl or wget for a URL).
#
#   install.sh [--prefix DIR] [--sha256 HEX] TARBALL
#
# TARBALL is a path or an http(s) URL. Its SHA-256 is checked before anything is unpacked:
# against --sha256 when given, otherwise against TARBALL.sha256 (the file `cargo xtask dist`
# writes next to the tarball, fetched from next to the URL). Without a checksum nothing is
# installed. Installs DIR/bin/buildwatch (default DIR: /usr/local) and the licences and SBOM
# under DIR/share/buildwatch/.
set -eu

prefix=/usr/local
want=
src=
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 64; }
                  prefix=$2; shift 2 ;;
        --sha256) [ $# -ge 2 ] || { echo "install.sh: --sha256 needs a checksum" >&2; exit 64; }
                  want=$2; shift 2 ;;
        -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) echo "install.sh: unknown option $1" >&2; exit 64 ;;
        *) [ -z "$src" ] || { echo "install.sh: one tarball at a time" >&2; exit 64; }
           src=$1; shift ;;
    esac
done
[ -n "$src" ] || { echo "usage: install.sh [--prefix DIR] [--sha256 HEX] TARBALL" >&2; exit 64; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/buildwatch-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch() { # URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl --fail --silent --show-error --location --proto '=https,http' -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    else
        echo "install.sh: a URL needs curl or wget (or download $1 and give the path)" >&2
        return 1
    fi
}

case "$src" in
    http://*|https://*)
        fetch "$src" "$tmp/buildwatch.tar.gz" || { echo "install.sh: cannot download $src" >&2; exit 1; }
        if [ -z "$want" ]; then
            fetch "$src.sha256" "$tmp/sum" || {
                echo "install.sh: no checksum at $src.sha256: give --sha256" >&2; exit 1; }
        fi ;;
    *)
        [ -f "$src" ] || { echo "install.sh: $src: no such file" >&2; exit 1; }
        cp "$src" "$tmp/buildwatch.tar.gz"
        if [ -z "$want" ]; then
            [ -f "$src.sha256" ] || {
                echo "install.sh: no checksum: $src.sha256 is missing; give --sha256" >&2; exit 1; }
            cp "$src.sha256" "$tmp/sum"
        fi ;;
esac
if [ -z "$want" ]; then
    # `sha256sum` format: HEX, two spaces, file name.
    want=$(cut -d' ' -f1 "$tmp/sum")
fi
case "$want" in
    *[!0-9a-fA-F]*|"") echo "install.sh: \`$want\` is not a SHA-256 checksum" >&2; exit 1 ;;
esac
[ ${#want} -eq 64 ] || { echo "install.sh: \`$want\` is not a SHA-256 checksum" >&2; exit 1; }
got=$(sha256sum "$tmp/buildwatch.tar.gz" | cut -d' ' -f1)
want=$(printf '%s' "$want" | tr 'A-F' 'a-f')
if [ "$got" != "$want" ]; then
    echo "install.sh: checksum mismatch for $src: expected $want, got $got; nothing installed" >&2
    exit 1
fi

mkdir "$tmp/x"
tar -xzf "$tmp/buildwatch.tar.gz" -C "$tmp/x" --no-same-owner
# One top directory, buildwatch-VERSION-TARGET, with bin/buildwatch in it.
top=$(ls "$tmp/x")
case "$top" in
    buildwatch-*) ;;
    *) echo "install.sh: not a buildwatch tarball (top directory: $top)" >&2; exit 1 ;;
esac
[ -f "$tmp/x/$top/bin/buildwatch" ] || { echo "install.sh: no bin/buildwatch in $src" >&2; exit 1; }

mkdir -p "$prefix/bin" "$prefix/share/buildwatch"
install -m 0755 "$tmp/x/$top/bin/buildwatch" "$prefix/bin/buildwatch.new"
mv -f "$prefix/bin/buildwatch.new" "$prefix/bin/buildwatch"
rm -rf "$prefix/share/buildwatch/licenses"
cp -R "$tmp/x/$top/licenses" "$prefix/share/buildwatch/licenses"
for f in LICENSE-MIT LICENSE-APACHE README.md sbom.cdx.json; do
    install -m 0644 "$tmp/x/$top/$f" "$prefix/share/buildwatch/$f"
done
echo "installed $("$prefix/bin/buildwatch" --version) to $prefix/bin/buildwatch (sha256 $got)"
echo "next: sudo $prefix/bin/buildwatch doctor"
