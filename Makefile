# signald — make targets. `make run` and `make test` are the two set-up
# commands of the README; both work on a fresh Debian machine with Go.

GO        ?= go
BIN       := bin/signald
SERVICES  := scripts/services.sh
HTTP_ADDR ?= 127.0.0.1:8080
# The bundled captures (see testdata/README.md), replayed in a loop by `make run`.
REPLAY    ?= testdata/binance/binance_spot_btcusdt_20240808_head1500.gz,testdata/binance/binance_usdm_btcusdt_20240808_head1500.gz

# staticcheck, pinned to the release that supports the Go in go.mod
# (go1.26), installed into .bin/ (git-ignored) on first use.
STATICCHECK_VERSION := v0.8.2
STATICCHECK         := .bin/staticcheck-$(STATICCHECK_VERSION)/staticcheck
# Executions per fuzz target in ci-fast, after its seed corpus.
FUZZ_EXECS ?= 2000

.PHONY: all build run run-redis ci-fast test test-short test-unit fuzz bench services-up services-down services-status lint gofmt-check vet staticcheck check-docs fmt clean generate check-generated catalog check-catalog regime-model regime-eval bench-http

all: build

build:
	$(GO) build -o $(BIN) ./cmd/signald

# The embedded default: in-process transport, Parquet store under ./data,
# the bundled captures replayed in a loop at the recorded pace.
run: build
	./$(BIN) run --replay $(REPLAY) --loop --speed 1 --http $(HTTP_ADDR) --data ./data

# The real stack on the servers `make services-up` starts.
run-redis: build services-up
	eval "$$($(SERVICES) env)" && ./$(BIN) run --replay $(REPLAY) --loop --speed 1 --http $(HTTP_ADDR) \
		--redis $$SIGNALD_REDIS_ADDR --clickhouse $$SIGNALD_CLICKHOUSE_ADDR

# The fast tier, without servers: lint, the tests with -short (asm and
# noasm builds; SIGNALD_INTEGRATION unset, so the Redis and ClickHouse tests
# skip), and every fuzz target for FUZZ_EXECS executions.
ci-fast: lint test-short fuzz

# Everything: ci-fast, then the integration and end-to-end tests against
# real Redis and ClickHouse, which it installs and starts first.
# SIGNALD_INTEGRATION=1 turns a server that is down into a failure instead
# of a skip. Packages run one at a time (-p 1): the kill-and-restart test can
# make the test ClickHouse abort and restart (see scripts/README.md), which
# must not hit another package's tests.
test: ci-fast services-up
	eval "$$($(SERVICES) env)" && export SIGNALD_INTEGRATION=1 && \
		$(GO) test -count=1 -p 1 -timeout 20m ./... && \
		$(GO) test -count=1 -p 1 -timeout 10m -tags noasm ./... && \
		$(GO) test -count=1 -timeout 10m -race ./transport/... ./store/... ./pipeline/... ./api/... ./internal/...

# -short shortens the long-stream kernel and stability tests and skips the
# regime model refit.
test-short:
	env -u SIGNALD_INTEGRATION $(GO) test -count=1 -short -timeout 10m ./...
	env -u SIGNALD_INTEGRATION $(GO) test -count=1 -short -timeout 10m -tags noasm ./...

fuzz:
	GO=$(GO) FUZZ_EXECS=$(FUZZ_EXECS) bash scripts/fuzz.sh

test-unit:
	$(GO) test -count=1 ./...

# Go benchmarks of every package; transport throughput against redis-benchmark
# and a bare go-redis loop (bench/transport); tick-to-storage latency of the
# daemon on the real servers at the recorded pace and at 10x (bench/ticklatency).
bench: build services-up
	eval "$$($(SERVICES) env)" && export SIGNALD_INTEGRATION=1 && \
		$(GO) test -run '^$$' -bench . -benchmem ./... && \
		$(GO) run ./bench/transport && \
		$(GO) run ./bench/ticklatency -bin $(BIN) -speeds 1,10 -duration 60s

# The built-in regime model (regime/default_model.json, embedded): fitted on
# a synthetic stream, deterministic (same file every time).
regime-model: build
	./$(BIN) regime fit --synthetic --seed 1 --out regime/default_model.json

# The evaluation that chose the detectors' default thresholds (README).
regime-eval: build
	./$(BIN) regime eval --seed 2

# HTTP API latency from a second process: /v1/macro against /healthz (the
# baseline, same run) at 200 keep-alive clients, on a daemon running 1,000
# synthetic instruments with the embedded transport and store (no servers).
# HTTPLOAD_ARGS adds flags, e.g. HTTPLOAD_ARGS="-rate 1000" for open loop.
bench-http: build
	$(GO) run ./bench/httpload -bin $(BIN) -instruments 1000 -clients 200 -duration 4s -rounds 5 -arrow $(HTTPLOAD_ARGS)

services-up:
	bash $(SERVICES) up

services-down:
	bash $(SERVICES) down

services-status:
	bash $(SERVICES) status

lint: gofmt-check vet check-generated check-catalog staticcheck check-docs

gofmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^features/asm/_generate/')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags noasm ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOBIN=$(CURDIR)/$(dir $(STATICCHECK)) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# docs/configuration.md names every flag of `signald run` (TestConfigDocs
# in cmd/signald).
check-docs:
	$(GO) test -count=1 -run 'TestConfigDocs' ./cmd/signald/

fmt:
	gofmt -w $$(git ls-files '*.go')

# features/CATALOG.md is generated from the feature registry; the features
# tests (TestCatalogFile) fail when it is stale, and so does check-catalog.
catalog:
	$(GO) run ./cmd/signald features list --markdown > features/CATALOG.md

check-catalog:
	@$(GO) run ./cmd/signald features list --markdown | diff -u features/CATALOG.md - \
		|| { echo "features/CATALOG.md is stale: run make catalog"; exit 1; }

# The AVX2 kernels of features/asm, written by the avo generator in
# features/asm/_generate (its own module: avo is a build-time tool only).
ASMGEN    := features/asm/_generate
ASMGENCMD := $(GO) run . -out ../kernels_amd64.s -stubs ../kernels_amd64.go -pkg asm

generate:
	cd $(ASMGEN) && $(ASMGENCMD)

# Fails when the committed kernels_amd64.s or kernels_amd64.go differ from
# what the generator writes now. It writes into a temporary directory and
# compares all but the first line (the header names the output paths), so
# the working tree is left alone.
check-generated:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		(cd $(ASMGEN) && $(GO) vet . && { test -z "$$(gofmt -l .)" || { echo "gofmt needed in $(ASMGEN)"; exit 1; }; } && \
			$(GO) run . -out "$$tmp/kernels_amd64.s" -stubs "$$tmp/kernels_amd64.go" -pkg asm) && \
		for f in kernels_amd64.s kernels_amd64.go; do \
			tail -n +2 "$$tmp/$$f" > "$$tmp/$$f.body"; \
			if ! tail -n +2 features/asm/$$f | cmp -s - "$$tmp/$$f.body"; then \
				echo "features/asm/$$f is stale: run make generate"; exit 1; fi; \
		done

clean:
	rm -rf bin .bin
