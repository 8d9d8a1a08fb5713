# signald — make targets. `make run` and `make test` are the two set-up
# commands of the README; both work on a fresh Debian machine with Go.

GO        ?= go
BIN       := bin/signald
SERVICES  := scripts/services.sh
HTTP_ADDR ?= 127.0.0.1:8080
# The bundled captures (see testdata/README.md), replayed in a loop by `make run`.
REPLAY    ?= testdata/binance/binance_spot_btcusdt_20240808_head1500.gz,testdata/binance/binance_usdm_btcusdt_20240808_head1500.gz

.PHONY: all build run run-redis test test-unit test-integration bench bench-http services-up services-down services-status lint fmt clean

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

# Everything: lint, unit tests (asm and noasm builds), and the integration and
# end-to-end tests against real Redis and ClickHouse, which it installs and
# starts first. SIGNALD_INTEGRATION=1 turns a server that is down into a
# failure instead of a skip. Packages run one at a time (-p 1): the
# kill-and-restart test can make the test ClickHouse abort and restart (see
# scripts/README.md), which must not hit another package's tests.
test: lint services-up
	eval "$$($(SERVICES) env)" && export SIGNALD_INTEGRATION=1 && \
		$(GO) test -count=1 -p 1 -timeout 20m ./... && \
		$(GO) test -count=1 -p 1 -timeout 10m -tags noasm ./... && \
		$(GO) test -count=1 -timeout 10m -race ./transport/... ./store/...

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

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^features/asm/_generate/')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags noasm ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
