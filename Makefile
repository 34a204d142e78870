# Innoxide — make targets. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: test lint testbed testbed-kube images test-images fmt build demo crds bench

## Install the test bed into ~/.cache/innoxide, cached: MySQL 9.7 (Debian sid), sysbench,
## Azurite (Microsoft's Azure Storage emulator, from npm) for the az:// tests, and
## Helm's SDK with the Kubernetes schemas (PyPI) for the chart check.
testbed:
	@bash scripts/testbed.sh all >/dev/null
	@bash scripts/azurite.sh >/dev/null
	@bash scripts/helm.sh >/dev/null

## etcd + apiextensions-apiserver built from Debian sid's Go sources, for the
## operator's tests (about 7 min the first time on 2 cores, seconds after).
testbed-kube:
	@bash scripts/kube-apiserver.sh >/dev/null

## OCI images with Debian's podman/buildah (FROM scratch; scripts/containers.sh
## installs podman, buildah and runc): the static innoxide-agent and
## innoxide-operator as ghcr.io/innoxide/*:<version>, and the tests' MySQL 9.7
## image (uid 999). Linked statically from the dev build (it shares the test
## build's crates); an image whose inputs did not change is kept. The e2e test
## tests/real_pod.rs runs a wired pod from them. Published images are release
## builds: IMAGE_PROFILE=image (docs/releasing.md, multi-arch flow).
images: testbed
	@bash scripts/images.sh

## What the tests run (tests/real_pod.rs): the agent and MySQL images. The
## operator's image is not built here: it runs in-process in the tests, and
## linking it alone recompiles the crates whose features differ from the
## workspace's (minutes on 2 cores).
test-images: testbed
	@bash scripts/images.sh agent mysql

## Lint: formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## All tests: installs the test bed when missing, then lint, then every test.
## Integration tests each run their own mysqld (and often sysbench): at most
## TEST_THREADS of them at once, so a 2-core machine is busy, not thrashing.
TEST_THREADS ?= 4
test: testbed testbed-kube test-images lint
	RUST_TEST_THREADS=$(TEST_THREADS) $(CARGO) test --workspace --locked --no-fail-fast

## The local demo: real MySQL 9.7 under sysbench load → hot backup → verify →
## apply-log → copy-back → restored server judged by the consistency oracle.
demo: testbed
	$(CARGO) build --locked -p innoxide-agent -p innoxide-e2e --bins
	./target/debug/demo

fmt:
	$(CARGO) fmt --all

## Regenerate the CRDs in crds/ (and the Helm chart's copy) from the operator's Rust types.
## `make test` fails when they drift (operator/tests/crds.rs).
crds:
	$(CARGO) run --locked -q -p innoxide-operator --bin crdgen -- crds
	cp crds/mysqlbackups.yaml crds/mysqlbackupschedules.yaml crds/mysqlrestores.yaml charts/innoxide-operator/crds/

build:
	$(CARGO) build --workspace --release --locked

## Benchmarks (not part of `make test` or CI): release build, the test bed's
## MySQL 9.7 with a sysbench dataset of BENCH_SIZE (`smoke` ≈ 50 MB for a quick
## check; default 2G, ~25 min), peers (MariaDB 10.11 + mariadb-backup, mydumper).
## Writes bench/results/<date>-<size>.{json,md}, PNG charts and LATEST.md.
BENCH_SIZE ?= 2G
BENCH_REPEAT ?= 3
bench: testbed
	@bash scripts/testbed.sh bench-peers >/dev/null
	$(CARGO) build --release --locked -p innoxide-agent -p innoxide-bench
	./target/release/innoxide-bench --size $(BENCH_SIZE) --repeat $(BENCH_REPEAT) --out bench/results $(BENCH_ARGS)
