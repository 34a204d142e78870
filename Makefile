# Innoxide — make targets. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: test lint testbed fmt build demo

## Install the test bed (MySQL 9.7 from Debian sid into ~/.cache/innoxide, sysbench); cached.
testbed:
	@bash scripts/testbed.sh all >/dev/null

## Lint: formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## All tests: installs the test bed when missing, then lint, then every test.
test: testbed lint
	$(CARGO) test --workspace --locked --no-fail-fast

## The local demo: real MySQL 9.7 under sysbench load → hot backup → verify →
## apply-log → copy-back → restored server judged by the consistency oracle.
demo: testbed
	$(CARGO) build --locked -p innoxide-agent -p innoxide-e2e --bins
	./target/debug/demo

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace --release --locked
