#!/bin/sh
# Builds the framebus Debian package from release binaries with Debian's
# own tools (dpkg-shlibdeps for the library dependencies, dpkg-deb for the
# archive): docs/packages.md, decision 0009.
#
#   BINS="framebus framebus-producer …" packaging/deb/build.sh BIN_DIR OUT_DIR
#
# BIN_DIR holds the release binaries (target/release); the package is
# written to OUT_DIR/framebus_VERSION-1_ARCH.deb and its path printed.
set -eu

BIN_DIR=${1:?usage: build.sh BIN_DIR OUT_DIR}
OUT_DIR=${2:?usage: build.sh BIN_DIR OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# The binaries of the package: the Makefile's BINS (what `make install`
# installs); the GStreamer plugin is not in it (yet).
BINS=${BINS:?set BINS to the binaries to package (the Makefile passes its own)}

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
[ -n "$VERSION" ] || { echo "build.sh: no version in $ROOT/Cargo.toml" >&2; exit 1; }
DEB_VERSION="$VERSION-1"
ARCH=$(dpkg --print-architecture)

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT INT TERM
PKG="$STAGE/framebus"
umask 022
install -d "$PKG/DEBIAN" "$PKG/usr/bin" "$PKG/lib/systemd/system" "$PKG/etc/framebus" \
    "$PKG/usr/share/doc/framebus" "$PKG/usr/share/lintian/overrides"

for b in $BINS; do
    [ -x "$BIN_DIR/$b" ] || { echo "build.sh: $BIN_DIR/$b is not built (make build)" >&2; exit 1; }
    install -m 0755 "$BIN_DIR/$b" "$PKG/usr/bin/$b"
    # As dh_strip does: no debug info, no .comment/.note sections.
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$PKG/usr/bin/$b"
done
sed 's|/usr/local/bin/|/usr/bin/|g' "$ROOT/packaging/framebus.service" \
    > "$PKG/lib/systemd/system/framebus.service"
install -m 0644 "$HERE/framebus.toml" "$PKG/etc/framebus/framebus.toml"
install -m 0644 "$HERE/copyright" "$PKG/usr/share/doc/framebus/copyright"
sed "s/@VERSION@/$DEB_VERSION/" "$HERE/changelog" | gzip -9n > "$PKG/usr/share/doc/framebus/changelog.Debian.gz"
install -m 0644 "$HERE/lintian-overrides" "$PKG/usr/share/lintian/overrides/framebus"
chmod 0644 "$PKG/lib/systemd/system/framebus.service" "$PKG/usr/share/doc/framebus/changelog.Debian.gz"

# Depends: the packages of every library the binaries link (dpkg-shlibdeps
# reads a debian/control, which a binary-only build has not).
mkdir -p "$STAGE/src/debian"
printf 'Source: framebus\n\nPackage: framebus\nArchitecture: any\n' > "$STAGE/src/debian/control"
EXES=""
for b in $BINS; do EXES="$EXES -e$PKG/usr/bin/$b"; done
# shellcheck disable=SC2086
SHLIBS=$(cd "$STAGE/src" && dpkg-shlibdeps -O $EXES 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || { echo "build.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

SIZE=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    -e "s/@SHLIBS@/$SHLIBS/" "$HERE/control.in" > "$PKG/DEBIAN/control"
install -m 0755 "$HERE/postinst" "$HERE/prerm" "$HERE/postrm" "$PKG/DEBIAN/"
install -m 0644 "$HERE/conffiles" "$PKG/DEBIAN/conffiles"
(cd "$PKG" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$PKG/DEBIAN/md5sums"
chmod 0644 "$PKG/DEBIAN/md5sums"

mkdir -p "$OUT_DIR"
DEB="$OUT_DIR/framebus_${DEB_VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$DEB" >/dev/null
echo "$DEB"
