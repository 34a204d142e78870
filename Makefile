# Innoxide — make targets. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: test lint testbed crds crds-check fmt build demo bench

## Install the test bed (MySQL 9.7 from Debian sid into ~/.cache/innoxide, sysbench); cached.
testbed:
	@bash scripts/testbed.sh all >/dev/null

## Lint: formatting, clippy with warnings as errors, CRDs in sync with the Rust types.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## All tests: installs the test bed when missing, then lint, then every test.
test: testbed lint
	$(CARGO) test --workspace --locked --no-fail-fast

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace --release --locked
