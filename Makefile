# kloop — build, test, lint, benchmark and demo.
#
# `make test` is what CI runs (.ci/run): it builds the sandbox control plane
# once (cached outside the repo by version, ~13 min on 2 cores the first
# time), then runs every Go test with the race detector, the fuzz seed
# corpora, and the editor suites. With RACE=1 (the default) the kloop
# binaries the suites spawn are race-built too: the Go harnesses follow the
# test binary's -race (internal/racecheck), the editor suites take RACE.

GO        ?= go
BIN       ?= bin/kloop
STATICCHECK_VERSION ?= v0.8.2
# RACE=0 runs the tests, and the kloop binaries they spawn, without -race.
RACE      ?= 1
# Two cores: the sandbox-backed packages each start a control plane.
TEST_FLAGS ?= $(if $(filter 1,$(RACE)),-race) -count=1 -timeout 40m
BENCH_PKGS ?= ./...

.PHONY: all build test test-go sandbox lint bench demo soak clean agent-image test-agent-image

all: build

build:
	$(GO) build -o $(BIN) ./cmd/kloop

# The control-plane binaries every sandbox test uses; prints progress and
# returns at once when the cache is complete.
sandbox:
	$(GO) run ./cmd/kloop sandbox build

test: sandbox test-go test-agent-image $(if $(wildcard extensions/editors.mk),test-editors)

test-go:
	$(GO) test $(TEST_FLAGS) ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Benchmarks of every issue, each beside its baseline, into BENCHMARKS.md.
bench: sandbox
	./scripts/bench.sh BENCHMARKS.md

demo: build sandbox
	go run ./test/demo/cmd/demo -kloop $(BIN)

# The demo's loop repeated for SOAK under steady traffic; reports the
# daemon's goroutines, live heap, resident memory and open files before and
# after, and fails on growth beyond noise.
SOAK ?= 10m
soak: build sandbox
	go run ./test/demo/cmd/demo -kloop $(BIN) -soak $(SOAK)

# The traffic-agent image (kloop agent) without Docker or a registry:
# bin/kloop-agent-image.tar, an OCI layout that docker load also takes.
# AGENT_IMAGE (or $$KLOOP_AGENT_IMAGE) sets the reference; VERSION is linked in.
agent-image:
	GO=$(GO) ./scripts/agent-image.sh $(if $(AGENT_IMAGE),--image $(AGENT_IMAGE)) $(if $(VERSION),--version $(VERSION))

# The image builder is its own module (ko's dependencies stay out of go.mod).
test-agent-image:
	cd tools/agentimage && $(GO) test -count=1 -timeout 15m ./...

clean:
	rm -rf bin

-include extensions/editors.mk
