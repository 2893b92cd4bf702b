# raftkv — see README.md. `make run` starts a local 3-node cluster; `make test` runs every test.
GO      ?= go
BIN     := bin/raftkv
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
PKGS    := ./...

.PHONY: all build run test test-unit test-integration lint fmt fuzz clean

all: build

## build: a static binary in bin/raftkv (CGO off, so it runs FROM scratch too)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/raftkv

## run: build, then start a 3-node cluster on 127.0.0.1 in the foreground (Ctrl-C stops it cleanly)
run: build
	./$(BIN) dev --nodes 3 --data-dir ./data

## test: lint, then every test with the race detector (unit, in-process cluster, real processes)
test: lint
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

## test-unit: the fast tests only (no process-level cluster tests)
test-unit:
	$(GO) test -race -short -count=1 $(PKGS)

## test-integration: only the process-level tests in test/, verbose
test-integration:
	$(GO) test -race -count=1 -timeout 20m -v ./test/...

## lint: formatting and vet
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## fuzz: a short run of each fuzz target
fuzz:
	$(GO) test ./fsm -run '^$$' -fuzz FuzzDecodeCommand -fuzztime 30s
	$(GO) test ./httpapi -run '^$$' -fuzz FuzzHandler -fuzztime 30s

IMAGE   ?= raftkv:latest
COMPOSE ?= docker-compose -f deploy/compose.yaml -p raftkv

## image: the container image $(IMAGE): FROM scratch, the static binary, user 65532, a /data volume
image: build
	docker build -t $(IMAGE) .

CERTS   := deploy/certs
CERTARGS = --addr 127.0.0.1:7000 --cacert $(CERTS)/ca.pem --cert $(CERTS)/ops.pem --key $(CERTS)/ops-key.pem

## cluster-certs: the compose cluster's CA, node certificates rk1..rk5, client certificate ops and gossip key
## in deploy/certs (kept when present; delete the directory for new ones)
cluster-certs: build
	@if [ ! -f $(CERTS)/ca.pem ]; then \
	  mkdir -p $(CERTS) && ./$(BIN) tls ca create --dir $(CERTS) --name "raftkv compose CA" && \
	  for n in rk1 rk2 rk3 rk4 rk5; do ./$(BIN) tls cert create --node $$n --dns $$n --dir $(CERTS) \
	    --ca $(CERTS)/ca.pem --ca-key $(CERTS)/ca-key.pem || exit 1; done && \
	  ./$(BIN) tls cert create --client ops --dir $(CERTS) --ca $(CERTS)/ca.pem --ca-key $(CERTS)/ca-key.pem && \
	  ./$(BIN) keyring generate > $(CERTS)/gossip.key && \
	  chmod a+r $(CERTS)/rk*-key.pem $(CERTS)/ops-key.pem $(CERTS)/gossip.key; \
	fi
	@# a+r: the containers run as user 65532 and read the keys from a bind mount. This is a local
	@# development cluster; on real hosts give each node only its own key, readable by its user only.

## cluster-up: a 3-node cluster in containers (deploy/compose.yaml, see deploy/README.md); API on 127.0.0.1:7000
## over TLS (client certificate deploy/certs/ops.pem), peer mTLS and gossip encryption on
cluster-up: image cluster-certs
	$(COMPOSE) up -d
	@# Wait for a leader: a linearizable get answers 0 (found) or 1 (not found) only once there is one.
	@for i in $$(seq 30); do ./$(BIN) get $(CERTARGS) --timeout 2s cluster-up-probe >/dev/null 2>&1; \
	  [ $$? -le 1 ] && break; sleep 1; done
	./$(BIN) cluster status $(CERTARGS)

## cluster-down: stop that cluster and remove its containers, network and volumes (every profile)
cluster-down:
	$(COMPOSE) --profile five down -v --remove-orphans

## chaos: the long chaos suite against containers (RAFTKV_CHAOS=long, minutes per scenario; see test/chaos/README.md).
## CHAOS_RUN=regexp picks scenarios, e.g. make chaos CHAOS_RUN='kill|partition'. The short pass is part of `make test`.
CHAOS_RUN ?= .
chaos:
	RAFTKV_CHAOS=long $(GO) test -count=1 -timeout 4h -v -run 'TestChaos/($(CHAOS_RUN))' ./test/chaos

## chaos-short: only the short chaos pass (each nemesis once), verbose
chaos-short:
	$(GO) test -count=1 -timeout 20m -v -run 'TestChaos/($(CHAOS_RUN))' ./test/chaos

.PHONY: image cluster-certs cluster-up cluster-down chaos chaos-short

## bench: raftkv vs etcd vs a bare net/http ceiling, 3 nodes each on loopback, one after the other; prints
## the table and writes it to bench/results/ (~6 min; BENCH_QUICK=1: 2 s rows, a smoke run; BENCH_FLAGS=--rounds 3
## for medians over rounds). The first run downloads etcd.
bench: build benchall
	./bin/benchall --raftkv ./$(BIN) --out bench/results $(BENCH_FLAGS)

## bench-memory: 1 M keys of 100 B into a fresh 3-node cluster via raftkv bench, then each node's RSS (goal < 1 GiB)
bench-memory: build benchall
	./bin/benchall memory --raftkv ./$(BIN) --out bench/results

## benchall: the comparison's orchestrator, from its own module (bench/etcd) so raftkv never depends on etcd
benchall:
	cd bench/etcd && $(GO) build -o ../../bin/benchall ./cmd/benchall

## bench-go: the Go benchmarks of the hot paths
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./fsm ./httpapi ./store ./transport ./bench/...

## bench-test: vet and test the bench/etcd module (a module of its own: ./... above does not include it);
## fails if its go.mod is not tidy (bench/modsync_test.go, in `make test`, catches the usual drift offline)
bench-test:
	cd bench/etcd && $(GO) mod tidy -diff && $(GO) vet ./... && $(GO) test -count=1 ./...

.PHONY: bench bench-memory benchall bench-go bench-test

clean:
	rm -rf bin data
