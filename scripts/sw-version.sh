#!/usr/bin/env bash
# Trunk post-build hook: names the service worker's cache after this build (a hash of the built
# index.html, which names the content-hashed wasm and JS), so each build caches its own files
# and deletes the older builds' on activation.
set -euo pipefail
dir="${TRUNK_STAGING_DIR:?run by trunk}"
build=$(sha256sum "$dir/index.html" | cut -c1-16)
sed -i "s/^const BUILD = 'dev';$/const BUILD = '$build';/" "$dir/sw.js"
grep -q "^const BUILD = '$build';$" "$dir/sw.js"
