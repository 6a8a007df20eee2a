#!/usr/bin/env bash
# Take a screenshot of a page (e.g. the operator status page at /admin) with headless Chromium.
#
#   tests/admin/screenshot.sh URL OUT.png
#
# Uses `chromium` (Debian), else `chromium-browser` or `google-chrome`. Set CHROMIUM=/path
# to use another binary.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 URL OUT.png" >&2
    exit 2
fi
url=$1
out=$2

browser=${CHROMIUM:-}
if [[ -z "$browser" ]]; then
    for candidate in chromium chromium-browser google-chrome; do
        if command -v "$candidate" >/dev/null 2>&1; then
            browser=$(command -v "$candidate")
            break
        fi
    done
fi
if [[ -z "$browser" ]] || ! command -v "$browser" >/dev/null 2>&1; then
    echo "$0: no Chromium found (looked for chromium, chromium-browser, google-chrome);" >&2
    echo "    install one (Debian: apt-get install -y chromium) or set CHROMIUM=/path/to/binary" >&2
    exit 1
fi

mkdir -p "$(dirname -- "$out")"
# Chromium writes the file relative to its working directory: give it an absolute path.
case $out in
    /*) abs_out=$out ;;
    *) abs_out=$PWD/$out ;;
esac
rm -f -- "$abs_out"

"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1280,1000 --virtual-time-budget=4000 \
    --screenshot="$abs_out" "$url"

if [[ ! -s "$abs_out" ]]; then
    echo "$0: $browser did not write $abs_out" >&2
    exit 1
fi
echo "$abs_out"
