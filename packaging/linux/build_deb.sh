#!/usr/bin/env bash
# Build a .deb from the PyInstaller bundle:  build_deb.sh BUNDLE_DIR OUT_DIR [--check]
#
#   /opt/c2s-desktop/                      the bundle (c2s-desktop, c2s, c2s-quantize, _internal/)
#   /usr/bin/{c2s-desktop,c2s,c2s-quantize} -> /opt/c2s-desktop/...
#   /usr/share/applications/, icons/hicolor/, metainfo/, doc/c2s-desktop/copyright
#
# User data (models, settings, sessions, logs in the home folder) is never part of the package,
# so removing or purging it leaves that data alone. --check lists and lints the result.
set -euo pipefail

BUNDLE=${1:?usage: build_deb.sh BUNDLE_DIR OUT_DIR [--check]}
OUT=${2:?usage: build_deb.sh BUNDLE_DIR OUT_DIR [--check]}
CHECK=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
APP_ID=io.github.c2s_desktop
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)
ARCH=$(dpkg --print-architecture)
DEB="$OUT/c2s-desktop_${VERSION}_${ARCH}.deb"

# Size budget of the unpacked bundle (MiB, apparent size; docs/BUILD.md "Size"), checked by --check.
BUDGET_MB=600
BUDGET_MB=${C2S_BUNDLE_BUDGET_MB:-$BUDGET_MB}  # a GPU bundle sets its own (the package workflow)

[ -x "$BUNDLE/c2s-desktop" ] || { echo "error: $BUNDLE/c2s-desktop not found (make package)" >&2; exit 2; }

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
PKG="$STAGE/c2s-desktop"
mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/applications" \
    "$PKG/usr/share/metainfo" "$PKG/usr/share/doc/c2s-desktop"
cp -a "$BUNDLE" "$PKG/opt/c2s-desktop"
for exe in c2s-desktop c2s c2s-quantize; do
    ln -s "/opt/c2s-desktop/$exe" "$PKG/usr/bin/$exe"
done
install -m 0644 "$HERE/$APP_ID.desktop" "$PKG/usr/share/applications/"
install -m 0644 "$HERE/$APP_ID.metainfo.xml" "$PKG/usr/share/metainfo/"
for size in 16 32 48 64 128 256 512; do
    dir="$PKG/usr/share/icons/hicolor/${size}x${size}/apps"
    mkdir -p "$dir"
    install -m 0644 "$ROOT/resources/icons/c2s-desktop-$size.png" "$dir/c2s-desktop.png"
done
mkdir -p "$PKG/usr/share/icons/hicolor/scalable/apps"
install -m 0644 "$ROOT/resources/icons/c2s-desktop.svg" \
    "$PKG/usr/share/icons/hicolor/scalable/apps/c2s-desktop.svg"
cat > "$PKG/usr/share/doc/c2s-desktop/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: c2s-desktop
License: Apache-2.0

Files: opt/c2s-desktop/_internal/*
Comment: third-party libraries bundled by PyInstaller (Qt/PySide6: LGPL-3.0; llama.cpp: MIT;
 numpy, scipy, pandas, h5py, anndata, scanpy, scikit-learn, umap-learn, statsmodels:
 BSD-3-Clause; numba, llvmlite, pynndescent: BSD-2-Clause; LLVM in llvmlite: Apache-2.0 WITH
 LLVM-exception; python-igraph and igraph: GPL-2.0-or-later; matplotlib: its PSF-based
 license; Pillow: MIT-CMU); each package's license is in its .dist-info folder under
 opt/c2s-desktop/_internal. The Cell2Sentence prompt templates are under
 resources/prompts/LICENSE-cell2sentence-1.2.0.txt.
EOF
gzip -9n -c > "$PKG/usr/share/doc/c2s-desktop/changelog.gz" <<EOF
c2s-desktop ($VERSION) stable; urgency=low

  * Release $VERSION.
EOF

# Run-time libraries the bundle takes from the system (PyInstaller leaves out libc, OpenGL/EGL,
# X11/xcb and font libraries on purpose: they must match the user's system).
cat > "$PKG/DEBIAN/control" <<EOF
Package: c2s-desktop
Version: $VERSION
Section: science
Priority: optional
Architecture: $ARCH
Maintainer: C2S Desktop maintainers <c2s-desktop@users.noreply.github.com>
Installed-Size: $(du -sk "$PKG/opt" | cut -f1)
Depends: libc6 (>= 2.31), zlib1g, libstdc++6, libgcc-s1, libgl1, libegl1, libfontconfig1,
 libfreetype6, libxkbcommon0, libxkbcommon-x11-0, libdbus-1-3, libx11-6, libx11-xcb1,
 libxcb1, libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-shape0, libxcb-randr0,
 libxcb-render-util0, libxcb-image0, libxcb-xkb1
Homepage: https://github.com/vandijklab/cell2sentence
Description: offline single-cell RNA-seq analysis with Cell2Sentence models
 C2S Desktop opens local AnnData (.h5ad) files and runs quantized Cell2Sentence
 language models with llama.cpp on this computer: cell-type annotation, summaries,
 questions, generation and embeddings. No data leaves the machine.
 .
 Includes the c2s command line and the c2s-quantize model converter.
EOF
find "$PKG" -type d -exec chmod 0755 {} +
dpkg-deb --root-owner-group --build -Zxz -z3 "$PKG" "$DEB" >/dev/null
echo "built $DEB ($(du -h "$DEB" | cut -f1))"

if [ "$CHECK" = "--check" ]; then
    size=$(du -sm --apparent-size "$BUNDLE" | cut -f1)
    [ "$size" -le "$BUDGET_MB" ] || {
        echo "error: the bundle is $size MiB, over the $BUDGET_MB MiB budget (du -sm --apparent-size $BUNDLE/_internal/* | sort -rn | head)" >&2
        exit 1
    }
    echo "bundle: $size MiB (budget $BUDGET_MB MiB)"
    dpkg-deb -I "$DEB" | sed -n '1,12p'
    listing=$(dpkg-deb -c "$DEB")
    for path in ./opt/c2s-desktop/c2s-desktop ./opt/c2s-desktop/c2s ./opt/c2s-desktop/c2s-quantize \
        ./usr/bin/c2s-desktop ./usr/share/applications/$APP_ID.desktop \
        ./usr/share/icons/hicolor/256x256/apps/c2s-desktop.png \
        ./opt/c2s-desktop/_internal/resources/demo/c2s-demo-pbmc.q8_0.gguf; do
        grep -q " $path" <<<"$listing" || { echo "error: $path missing from $DEB" >&2; exit 1; }
    done
    echo "deb contents: $(wc -l <<<"$listing") entries, all expected paths present"
    if command -v desktop-file-validate >/dev/null; then
        desktop-file-validate "$HERE/$APP_ID.desktop"
    fi
    if command -v appstreamcli >/dev/null; then
        appstreamcli validate --no-net --pedantic "$HERE/$APP_ID.metainfo.xml" || true
    fi
    if command -v lintian >/dev/null; then
        # Bundled third-party binaries trip lintian's policy checks (embedded libraries,
        # unstripped files, /opt); the report is informational.
        lintian --no-tag-display-limit "$DEB" | sort | uniq -c | sort -rn | head -20 || true
    fi
fi
