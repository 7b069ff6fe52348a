# hookguard — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: all build run test check unit fuzz-tools fuzz-build fuzz-short fuzz-long e2e e2e-real-node tools deploy bench load-test image image-offline fmt clean

all: build

build:
	$(CARGO) build --release --locked

## Run hookguard with zero config (self-signed TLS in certs/dev, built-in policy).
run:
	$(CARGO) run --release --locked -- serve

## Everything: formatting, lints, unit and integration tests, the real-cluster suite (simulated
## node) and the real-node suite (containers really run).
test: check unit fuzz-short e2e e2e-real-node

## Formatting and lints (warnings are errors).
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --test e2e -- -D warnings

## Unit tests (engine, rules, config) and integration tests (HTTP, TLS, CLI).
unit:
	$(CARGO) test --locked --workspace

## Fuzzing (fuzz/README.md): cargo-fuzz on the nightly toolchain. `fuzz-short` runs every target
## for FUZZ_SECONDS and fails on any crash or broken invariant; `fuzz-long` is the recorded run.
FUZZ_TARGETS := review review_structured policy_config lint postrender
FUZZ_SECONDS ?= 8
FUZZ_RUNS ?= 10000000
FUZZ := $(CARGO) +nightly fuzz
FUZZ_DICT_review := dicts/review.dict
FUZZ_DICT_review_structured :=
FUZZ_DICT_policy_config := dicts/yaml.dict
FUZZ_DICT_lint := dicts/yaml.dict
FUZZ_DICT_postrender := dicts/yaml.dict

fuzz-tools:
	@$(CARGO) +nightly --version >/dev/null 2>&1 || { \
	  echo "fuzz: no nightly toolchain (cargo-fuzz needs it): run 'rustup toolchain install nightly'" >&2; exit 1; }
	@$(FUZZ) --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@$(FUZZ) --version

fuzz-build: fuzz-tools
	$(FUZZ) build

# Each target starts from its committed seeds (fuzz/seeds) plus what earlier runs found
# (fuzz/corpus, not committed); -timeout makes a slow input a failure too. The full output of
# each run is in fuzz/logs/TARGET.log, a failing input in fuzz/artifacts/TARGET/.
define fuzz_short_one
	@mkdir -p fuzz/corpus/$(1) fuzz/logs
	@echo "fuzz: $(1) for $(FUZZ_SECONDS) s"
	@if ! $(FUZZ) run $(1) fuzz/corpus/$(1) $(wildcard fuzz/seeds/$(1)) -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	    $(if $(FUZZ_DICT_$(1)),-dict=fuzz/$(FUZZ_DICT_$(1))) >fuzz/logs/$(1).log 2>&1; then \
	  tail -n 40 fuzz/logs/$(1).log; \
	  echo "fuzz: $(1) FAILED (full output in fuzz/logs/$(1).log, the input in fuzz/artifacts/$(1)/)" >&2; \
	  exit 1; \
	fi
	@grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
	  fuzz/logs/$(1).log | sed 's/^stat::/  /'

endef

fuzz-short: fuzz-build
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_short_one,$(t)))

## One long recorded run of one target (FUZZ_TARGET=review ...): one process, one job, FUZZ_RUNS
## executions; see fuzz/README.md. FUZZ_SANITIZER=none runs about ten times faster (hookguard's
## fuzzed code is safe Rust; the invariants are checked either way).
FUZZ_SANITIZER ?= address
fuzz-long: fuzz-tools
	mkdir -p fuzz/corpus/$(FUZZ_TARGET)
	$(FUZZ) run --sanitizer $(FUZZ_SANITIZER) $(FUZZ_TARGET) fuzz/corpus/$(FUZZ_TARGET) $(wildcard fuzz/seeds/$(FUZZ_TARGET)) -- \
	  -runs=$(FUZZ_RUNS) -timeout=10 -print_final_stats=1 \
	  $(if $(FUZZ_DICT_$(FUZZ_TARGET)),-dict=fuzz/$(FUZZ_DICT_$(FUZZ_TARGET)))

## Build kube-apiserver, etcd, helm 3/4, kwok, ... from their Go modules into a cache; print the bin dir.
tools:
	@tests/e2e/tools/build.sh

## The real-cluster end-to-end suite (kube-apiserver, etcd, helm 3 and 4) against hookguard over TLS.
e2e:
	@scripts/install-test-deps.sh
	@bin="$$(tests/e2e/tools/build.sh | tail -n 1)"; \
	echo "e2e: tools in $$bin"; \
	HOOKGUARD_TOOLS_BIN="$$bin" $(CARGO) test --locked --test e2e

## The real-node suite: a kubelet with containerd and runc (Debian packages) and kube-proxy, the
## chart installed for real from the offline image. Needs root (containers, mounts, iptables).
e2e-real-node:
	@scripts/install-test-deps.sh --real-node
	@bin="$$(tests/e2e/tools/build.sh | tail -n 1)"; \
	archive="$$(scripts/image-offline.sh | tail -n 1)"; images="$$(dirname "$$archive")"; \
	echo "e2e-real-node: tools in $$bin, images in $$images"; \
	HOOKGUARD_TOOLS_BIN="$$bin" HOOKGUARD_IMAGES_DIR="$$images" $(CARGO) test --locked --test e2e -- --real-node

## Re-render deploy/ from the chart (the e2e suite fails when deploy/ is stale).
deploy:
	scripts/render-deploy.sh

## Engine micro-benchmarks (criterion) and the TLS load test. Results go in BENCHMARKS.md by hand.
bench:
	$(CARGO) bench --locked --bench engine
	$(CARGO) bench --locked --bench inventory_memory

load-test:
	scripts/load-test.sh

## hookguard's image as an OCI archive, with no Docker and no registry (plus the real-node suite's
## busybox and pause images); the last line printed is the archive's path.
image-offline:
	@scripts/install-test-deps.sh --real-node
	@scripts/image-offline.sh

## The container image the chart deploys (needs Docker with BuildKit and registry access).
IMAGE ?= ghcr.io/hookguard/hookguard
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
image:
	docker build -t $(IMAGE):$(VERSION) .

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
