#!/usr/bin/env bash
# Prove the bundle works on a machine without Python:  package_test.sh BUNDLE_DIR [CHECKPOINT_DIR]
# (DEB=path/to.deb: the chroot gets the .deb's files instead of a copy of the bundle)
#
# 1. A minimal root file system: the bundle under /opt/c2s-desktop plus only the system
#    libraries its ELF files link (ldd closure), fontconfig files and /dev, /proc, /tmp. It holds
#    no Python interpreter and no Python library outside the bundle. Run with chroot in a private
#    mount namespace (unshare); falls back to step 2 alone where that is not permitted.
# 2. Always also on the host with `env -i`: PATH without any python, HOME in a temp folder.
#
# In each: c2s-desktop --self-test (offscreen; includes the model process and a scanpy
# preprocessing in a child process), the demo annotation through c2s (model in a spawned child
# process), c2s preprocess of the demo data (scanpy in-process: QC, clusters, UMAP, markers),
# c2s version --json, c2s-quantize --help, and, when CHECKPOINT_DIR (a small Hugging Face
# checkpoint) is given, a c2s-quantize conversion, whose quantize step runs in a child process
# of the frozen executable. Afterwards nothing in the bundle has changed and numba's JIT cache
# is in the user's cache folder.
set -euo pipefail

BUNDLE=$(cd "${1:?usage: package_test.sh BUNDLE_DIR [CHECKPOINT_DIR]}" && pwd)
CKPT=${2:-}
[ -n "$CKPT" ] && CKPT=$(cd "$CKPT" && pwd)
WORK=$(mktemp -d /tmp/c2s-package-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "package-test FAILED: $*" >&2; exit 1; }

# The checks, run with PREFIX (the bundle folder as the program sees it), DATA_DIR (a writable
# folder) and RUN (how to start a program in the environment under test).
checks() {
    local where=$1 prefix=$2 out=$3 ckpt=$4
    local demo="$prefix/_internal/resources/demo"
    local t0 t1
    echo "== $where"
    t0=$(date +%s)
    "${RUN[@]}" "$prefix/c2s-desktop" --self-test || fail "$where: c2s-desktop --self-test"
    t1=$(date +%s); echo "   self-test passed ($((t1 - t0)) s)"
    "${RUN[@]}" "$prefix/c2s" version --json > "$WORK/version.json" || fail "$where: c2s version"
    grep -q '"gpu_offload"' "$WORK/version.json" || fail "$where: c2s version --json: no backend"
    echo "   backend: $(sed -n 's/.*"summary": "\(.*\)".*/\1/p' "$WORK/version.json")"
    t0=$(date +%s)
    "${RUN[@]}" "$prefix/c2s" annotate "$demo/pbmc_demo.h5ad" \
        --model "$demo/c2s-demo-pbmc.q8_0.gguf" --cells louvain=0 --candidates-from cell_type \
        --mode per-cell -o "$out/annotated.h5ad" --csv "$out/annotated.csv" \
        || fail "$where: c2s annotate"
    t1=$(date +%s)
    local rows
    rows=$(($(wc -l < "$WORKHOST_OUT/annotated.csv") - 1))
    [ "$rows" -gt 0 ] || fail "$where: c2s annotate wrote no rows"
    echo "   c2s annotate: $rows cells of louvain=0 ($((t1 - t0)) s)"
    t0=$(date +%s)
    "${RUN[@]}" "$prefix/c2s" preprocess "$demo/pbmc_demo.h5ad" -o "$out/prepared.h5ad" \
        > "$WORK/preprocess.txt" || fail "$where: c2s preprocess"
    t1=$(date +%s)
    "${RUN[@]}" "$prefix/c2s" info --json "$out/prepared.h5ad" > "$WORK/prepared.json" \
        || fail "$where: c2s info of the prepared file"
    grep -q '"X_umap": 2' "$WORK/prepared.json" || fail "$where: c2s preprocess wrote no X_umap"
    local clusters
    clusters=$(sed -n 's/^ *"leiden": \([0-9]*\).*/\1/p' "$WORK/prepared.json")
    [ "${clusters:-0}" -gt 1 ] || fail "$where: c2s preprocess wrote no leiden clusters"
    echo "   c2s preprocess: $clusters leiden clusters, X_umap ($((t1 - t0)) s)"
    "${RUN[@]}" "$prefix/c2s-quantize" --help > /dev/null || fail "$where: c2s-quantize --help"
    echo "   c2s-quantize --help ok"
    if [ -n "$ckpt" ]; then
        t0=$(date +%s)
        "${RUN[@]}" "$prefix/c2s-quantize" "$ckpt" -o "$out/tiny.q8_0.gguf" --type q8_0 \
            > /dev/null || fail "$where: c2s-quantize conversion"
        [ -s "$WORKHOST_OUT/tiny.q8_0.gguf" ] || fail "$where: c2s-quantize wrote no GGUF"
        t1=$(date +%s); echo "   c2s-quantize conversion to q8_0 ok ($((t1 - t0)) s)"
    fi
}

# The bundle is as installed (no __pycache__, numba cache or settings written into it) and
# numba cached its compiled functions under HOME.
unchanged() {
    local bundle=$1 since=$2 home=$3 changed cached
    changed=$(find "$bundle" -newer "$since" | head -5)
    [ -z "$changed" ] || fail "the programs wrote into the bundle: $changed"
    cached=$(find "$home/.cache/c2s-desktop/numba" -name '*.nbi' 2>/dev/null | wc -l)
    [ "$cached" -gt 0 ] || fail "no numba cache under $home/.cache/c2s-desktop/numba"
    echo "   bundle unchanged; numba cache: $cached functions under HOME/.cache/c2s-desktop/numba"
}

# -- 1. chroot -----------------------------------------------------------------------------
ROOT="$WORK/root"
chroot_ok=0
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v chroot >/dev/null \
    && unshare --mount true 2>/dev/null; then
    mkdir -p "$ROOT"/{opt,tmp,home/user,dev,proc,etc,work}
    chmod 1777 "$ROOT/tmp"
    if [ -n "${DEB:-}" ]; then  # the installed layout: /opt/c2s-desktop, /usr/bin links
        dpkg-deb -x "$DEB" "$ROOT"
    else
        cp -a "$BUNDLE" "$ROOT/opt/c2s-desktop"
    fi
    # System libraries: the ldd closure of every ELF file in the bundle, minus the bundle.
    find "$BUNDLE" -type f \( -name '*.so*' -o -perm -u+x \) -print0 \
        | xargs -0 file -N | grep -E 'ELF.*(executable|shared object)' | cut -d: -f1 \
        | LD_LIBRARY_PATH="$BUNDLE/_internal" xargs -r ldd 2>/dev/null | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' \
        | grep -v "^$BUNDLE/" > "$WORK/system-libs.txt"
    # The executables themselves are loaded before the bundle's folder is on the search path.
    ldd "$BUNDLE/c2s-desktop" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' \
        >> "$WORK/system-libs.txt"
    sort -u -o "$WORK/system-libs.txt" "$WORK/system-libs.txt"
    while read -r lib; do
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    done < "$WORK/system-libs.txt"
    [ -e /lib64 ] && [ ! -e "$ROOT/lib64" ] && [ -L /lib64 ] && cp -P /lib64 "$ROOT/lib64"
    [ -e /lib ] && [ -L /lib ] && [ ! -e "$ROOT/lib" ] && cp -P /lib "$ROOT/lib"
    for d in /etc/fonts /usr/share/fonts/truetype/dejavu; do
        [ -d "$d" ] && mkdir -p "$ROOT$(dirname "$d")" && cp -a "$d" "$ROOT$d"
    done
    echo "user:x:1000:1000::/home/user:/nonexistent" > "$ROOT/etc/passwd"
    if [ -n "$CKPT" ]; then cp -a "$CKPT" "$ROOT/work/ckpt"; fi
    # No Python outside the bundle: no interpreter, no standard library, no site-packages.
    if find "$ROOT" -path "$ROOT/opt" -prune -o \( -name 'python*' -o -name 'site-packages' \) \
        -print | grep -q .; then
        fail "the test root contains Python outside the bundle"
    fi
    echo "test root: $(wc -l < "$WORK/system-libs.txt") system libraries, $(du -sh --exclude=opt "$ROOT" | cut -f1) besides the bundle"
    # Mounts in a private namespace (gone when it exits), then env -i + chroot.
    cat > "$WORK/inroot.sh" <<'EOF'
#!/bin/sh
root=$1; shift
mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" || exit 97
exec env -i PATH=/nonexistent HOME=/home/user QT_QPA_PLATFORM=offscreen LANG=C.UTF-8 \
    GGML_NO_BACKTRACE=1 "$CHROOT" "$root" "$@"
EOF
    chmod +x "$WORK/inroot.sh"
    export CHROOT
    CHROOT=$(command -v chroot)
    RUN=(unshare --mount --propagation private "$WORK/inroot.sh" "$ROOT")
    WORKHOST_OUT="$ROOT/tmp"
    chroot_ok=1  # namespaces are permitted: from here on a failure is the bundle's
    touch "$WORK/chroot-start"
    checks "chroot without Python (system libraries only${DEB:+, installed from the .deb})" \
        /opt/c2s-desktop /tmp "${CKPT:+/work/ckpt}"
    unchanged "$ROOT/opt/c2s-desktop" "$WORK/chroot-start" "$ROOT/home/user"
    if [ -n "${DEB:-}" ]; then
        "${RUN[@]}" /usr/bin/c2s version > /dev/null || fail "/usr/bin/c2s (link) does not start"
        echo "   /usr/bin/c2s (link into /opt) ok"
    fi
else
    echo "== no root or no mount namespaces here: chroot check skipped, env -i check only"
fi

# -- 2. env -i on the host -------------------------------------------------------------------
mkdir -p "$WORK/home" "$WORK/bin" "$WORK/out"
RUN=(env -i PATH="$WORK/bin" HOME="$WORK/home" QT_QPA_PLATFORM=offscreen LANG=C.UTF-8
    GGML_NO_BACKTRACE=1)
if "${RUN[@]}" /bin/sh -c 'command -v python3 || command -v python' >/dev/null 2>&1; then
    fail "python is on the test PATH"
fi
WORKHOST_OUT="$WORK/out"
touch "$WORK/host-start"
checks "env -i (PATH without python, HOME=$WORK/home)" "$BUNDLE" "$WORK/out" "$CKPT"
unchanged "$BUNDLE" "$WORK/host-start" "$WORK/home"
[ -d "$WORK/home" ] && echo "   files the app wrote under HOME: $(find "$WORK/home" -type f | wc -l)"
echo "package-test passed$([ "$chroot_ok" = 1 ] && echo ' (chroot and env -i)' || echo ' (env -i only)')"
