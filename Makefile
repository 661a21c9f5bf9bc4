# layercorr: the two set-up commands are `make demo` and `make test`.
# Everything the project needs (Python packages, the DuckDB shell) comes from
# the pinned virtual environment made here; the cargo target directory lives
# outside the checkout so that repeated CI runs on one machine are incremental.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DUCKDB := $(VENV)/bin/duckdb
export CARGO_TARGET_DIR ?= $(HOME)/.cache/layercorr/target
EXT := build/release/layercorr.duckdb_extension
CARGO_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DEMO_STAMP := data/.demo-assets

.PHONY: all build nasm venv demo test test-rust test-python bench bench-torch bench-cluster lint fmt clean assets

all: build

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# torch and the CUDA runtime its PyPI wheel loads (about 5 GB), for the
# optional torch column of benches/bench_corr.py: `make bench-torch`.
$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(VENV)/bin/pip install --quiet -r requirements-bench.txt
	touch $@

# nasm assembles libjpeg-turbo's SIMD JPEG decoder (crates/engine/Cargo.toml):
# Debian's package, pinned. Where it cannot be installed (no root, no apt) the
# build goes on with the plain C decoder: the same pixels, twice the time.
NASM_VERSION := 2.16.01-1
nasm:
	@command -v nasm >/dev/null || apt-get install -y -q nasm=$(NASM_VERSION) >/dev/null \
	  || { apt-get update -q >/dev/null && apt-get install -y -q nasm=$(NASM_VERSION) >/dev/null; } \
	  || echo "warning: nasm could not be installed: JPEG decoding runs without SIMD"

# The extension: release cdylib + DuckDB footer. cargo decides what to rebuild.
# Every target of the workspace is built in this one configuration, so that
# `cargo test` afterwards reuses the same compiled dependencies.
# The build and the footer hold one lock, so that a second `make build` at
# the same time cannot read the library while the first one links it.
build: venv nasm
	mkdir -p $(CARGO_TARGET_DIR)
	flock $(CARGO_TARGET_DIR)/.layercorr-build.lock sh -c '\
	  cargo build --release --workspace --all-targets && \
	  $(PY) scripts/append_footer.py $(CARGO_TARGET_DIR)/release/liblayercorr.so $(EXT) --extension-version v$(CARGO_VERSION)'

$(DEMO_STAMP): venv scripts/fetch_demo.py scripts/convert_efficientnet_lite.py
	$(PY) scripts/fetch_demo.py --data data
	touch $@

assets: $(DEMO_STAMP)

demo: build assets
	mkdir -p out
	$(DUCKDB) -unsigned data/demo.duckdb < sql/demo.sql

test: build assets test-rust test-python

test-rust:
	cargo test --release --workspace

test-python: build assets
	$(PY) -m pytest -q tests

bench: build assets
	$(PY) benches/bench_inference.py
	$(PY) benches/bench_corr.py --shapes 1000x100352,2000x200704
	$(PY) benches/summary.py

bench-torch: $(VENV)/.bench-installed bench

# Ray: 1 vs 2 workers beside single-process SQL (needs root for its network namespace).
bench-cluster: build assets
	$(PY) benches/bench_cluster.py

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	rm -rf build out
