# AppFence — build, run and test.
#
#   make run     build and serve on the built-in default config (127.0.0.1:5053)
#   make test    install missing test tools (dig, promtool, nft, systemd-analyze), lint, and run every test with -race
#
# Heavy runs, kept out of CI:
#   make bench   every Go benchmark, then AppFence, Unbound and CoreDNS side by
#                side in CPU per query, qps, latency and memory (cmd/dnsbench;
#                docs/performance.md); the tables also into BENCHMD
#   make fuzz    every fuzz target for FUZZTIME (20s) each (scripts/fuzz.sh)
#   make soak    AppFence under load and faults on loopback for SOAKTIME (3m), then
#                the TCP hog, slow-zone and spoofed-source attacks beside ordinary
#                clients for ATTACKTIME (45s) each (cmd/soak, docs/security.md)
#
#   make conformance  ISC's genreport against AppFence on loopback (cmd/conformance,
#                docs/conformance.md); also part of make test, as TestConformance

GO       ?= go
BIN      := bin/appfence
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
export PATH := $(PATH):/usr/local/go/bin:$(shell $(GO) env GOPATH 2>/dev/null)/bin

.PHONY: all build run test test-deps lint vet fmt bench fuzz soak conformance clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/appfence

run: build
	./$(BIN) serve

test: test-deps lint
	$(GO) test -race -count=1 -timeout 8m ./...

# Tools the tests use: dig for the end-to-end tests, promtool for the alert
# rules and the dashboard, nft for the firewall example and systemd-analyze
# for the systemd unit (deploy/). Installed with apt-get when missing and
# possible; otherwise the command to run is printed.
test-deps:
	@./scripts/test-deps.sh

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Where the bench keeps CoreDNS, built once with go install (outside the
# repository), how long each run lasts, how many runs, which workloads
# (go run ./cmd/dnsbench -h lists them) and where the markdown tables go.
BENCHTOOLS ?= $(HOME)/.cache/appfence-bench
BENCHTIME  ?= 10s
BENCHRUNS  ?= 3
BENCHLOADS ?= all
BENCHMD    ?= bin/dnsbench.md

bench: build
	@GO=$(GO) ./scripts/bench-deps.sh $(BENCHTOOLS) >/dev/null
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./cmd/dnsbench -appfence $(BIN) -unbound "$$(command -v unbound || echo /usr/sbin/unbound)" \
		-coredns $(BENCHTOOLS)/coredns -duration $(BENCHTIME) -runs $(BENCHRUNS) \
		-workloads $(BENCHLOADS) -markdown $(BENCHMD) -go $(GO) -tools ../shared/tools

fuzz:
	@GO=$(GO) ./scripts/fuzz.sh

SOAKTIME   ?= 3m
ATTACKTIME ?= 45s
soak: build
	$(GO) run ./cmd/soak -appfence $(BIN) -duration $(SOAKTIME) -attack-time $(ATTACKTIME)

# genreport is built from ../shared/tools/genreport into CONFTOOLS, outside
# the repository.
CONFTOOLS ?= $(HOME)/.cache/appfence-conformance
conformance: build
	@GO=$(GO) ./scripts/conformance.sh $(BIN) $(CONFTOOLS)

clean:
	rm -rf bin
