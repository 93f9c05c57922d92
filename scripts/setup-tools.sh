#!/usr/bin/env bash
# Installs what building, serving and testing need, skipping what is already there.
# Versions are the ones ../shared/TOOLCHAIN.md measured to work on this kind of machine.
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
[ "${1:-}" = "--browser" ] && want_browser=1

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# The tools' own release profiles use fat LTO and one codegen unit (trunk: 14 minutes on 2
# cores). Build tools need no such speed: thin-local LTO and parallel codegen.
export CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
# `make test`'s lints are for this project's code: a tool compiled by clippy's driver would
# fail on its own warnings.
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

# trunk 0.22 needs a newer rustc than this machine has.
# Without its default features: no update check and no TLS stack (it fetches no tool here: we
# install them), and unoptimised (it copies and hashes files; the heavy steps are other
# programs): 3.1 minutes to install on 2 cores instead of about 6 at opt-level 1.
if ! trunk --version 2>/dev/null | grep -q '0.21.14'; then
  CARGO_PROFILE_RELEASE_OPT_LEVEL=0 cargo install trunk --version 0.21.14 --locked --no-default-features
fi

# wasm-bindgen-cli must equal the wasm-bindgen in Cargo.lock, or trunk tries to download one.
wbg=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if ! wasm-bindgen --version 2>/dev/null | grep -q " $wbg\$"; then
  # Not --locked: the lock pins a webpki-roots the registry no longer serves.
  # No TLS: that is for its test runner's downloads. At opt-level 1 it installs in 1.9 minutes
  # (2.3 before) and processes the app's wasm in 5.3 s instead of 4.9, to the same bytes.
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 cargo install wasm-bindgen-cli --version "$wbg" --no-default-features
fi

# wasm-opt from npm binaryen (Debian's is too old and breaks the app); playwright-core (Chromium)
# and puppeteer-core (Firefox over WebDriver BiDi) for the browser tests.
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/puppeteer-core ]; then
  npm ci --no-audit --no-fund
fi

if [ "$want_browser" = 1 ]; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  # A second engine: the app on its CPU backend (and WebGPU on lavapipe with a preference).
  # WebGPU needs Firefox 141 or newer: Debian 12's security updates carry 153 ESR, while an
  # older package list or install has 140, whose release build refuses every adapter.
  # `|| true`: on a machine without Firefox the pipeline fails, and `set -e -o pipefail` would end
  # the script here instead of installing it.
  ff_major=$(firefox-esr --version 2>/dev/null | sed -n 's/.* \([0-9]\+\)\..*/\1/p' || true)
  [ "${ff_major:-0}" -ge 141 ] || missing+=(firefox-esr)
  # lavapipe: native wgpu tests on the CPU.
  [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers)
  # WebKit, Safari's engine: WebKitGTK's MiniBrowser driven by WebKitWebDriver (classic
  # WebDriver), on a virtual display.
  command -v WebKitWebDriver >/dev/null || missing+=(webkit2gtk-driver)
  command -v Xvfb >/dev/null || missing+=(xvfb)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
fi
