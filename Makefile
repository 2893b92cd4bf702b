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

clean:
	rm -rf bin data
