# hookguard — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: all build run test check unit e2e tools deploy bench load-test image fmt clean

all: build

build:
	$(CARGO) build --release --locked

## Run hookguard with zero config (self-signed TLS in certs/dev, built-in policy).
run:
	$(CARGO) run --release --locked -- serve

## Everything: formatting, lints, unit and integration tests, and the real-cluster suite.
test: check unit e2e

## Formatting and lints (warnings are errors).
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --test e2e -- -D warnings

## Unit tests (engine, rules, config) and integration tests (HTTP, TLS, CLI).
unit:
	$(CARGO) test --locked

## Build kube-apiserver, etcd, helm 3/4, kwok, ... from their Go modules into a cache; print the bin dir.
tools:
	@tests/e2e/tools/build.sh

## The real-cluster end-to-end suite (kube-apiserver, etcd, helm 3 and 4) against hookguard over TLS.
e2e:
	@scripts/install-test-deps.sh
	@bin="$$(tests/e2e/tools/build.sh | tail -n 1)"; \
	echo "e2e: tools in $$bin"; \
	HOOKGUARD_TOOLS_BIN="$$bin" $(CARGO) test --locked --test e2e

## Re-render deploy/ from the chart (the e2e suite fails when deploy/ is stale).
deploy:
	scripts/render-deploy.sh

## Engine micro-benchmarks (criterion) and the TLS load test. Results go in BENCHMARKS.md by hand.
bench:
	$(CARGO) bench --locked --bench engine
	$(CARGO) bench --locked --bench inventory_memory

load-test:
	scripts/load-test.sh

## The container image the chart deploys (needs Docker with BuildKit and registry access).
IMAGE ?= ghcr.io/hookguard/hookguard
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
image:
	docker build -t $(IMAGE):$(VERSION) .

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
