# polyvisor: the two front doors are `make demo` and `make test`.
GO       ?= go
BIN      := bin
GOFLAGS  ?=
export GOFLAGS

.PHONY: all build deps demo test unit e2e bench fmt vet clean

all: build

# The guest agent is built for every arch VM templates can be made for.
AGENT_ARCHES := amd64 arm64 riscv64

build:
	$(GO) build -o $(BIN)/ ./cmd/polyvisor ./cmd/polyvisor-monitor
	for a in $(AGENT_ARCHES); do CGO_ENABLED=0 GOARCH=$$a $(GO) build -trimpath -ldflags=-s -o $(BIN)/polyvisor-agent-$$a ./cmd/polyvisor-agent || exit 1; done

deps:
	bash scripts/deps.sh

demo: deps build
	bash scripts/demo.sh

# Unit tests, then the end-to-end suite against real runc (root needed).
test: deps build vet
	$(GO) test -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal)" || (echo "gofmt needed:"; gofmt -l cmd internal; exit 1)

bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 20x -count 1 -timeout 30m ./internal/bench/

clean:
	rm -rf $(BIN)
