# polyvisor: the two front doors are `make demo` and `make test`.
GO       ?= go
BIN      := bin
GOFLAGS  ?=
export GOFLAGS

.PHONY: all build webui deps deps-check demo test unit race e2e bench fuzz fmt vet lint clean stress

all: build

# The guest agent is built for every arch VM templates can be made for
# (GOARCH names; arm is built for ARMv7, Debian's armhf).
AGENT_ARCHES := amd64 arm64 riscv64 ppc64le s390x arm

build: webui
	$(GO) build -o $(BIN)/ ./cmd/polyvisord ./cmd/polyvisor-monitor ./tools/vcsim
	# The CLI starts for every command: static (no dynamic loader) and
	# stripped, it starts faster.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o $(BIN)/polyvisor ./cmd/polyvisor
	for a in $(AGENT_ARCHES); do CGO_ENABLED=0 GOARCH=$$a GOARM=7 $(GO) build -trimpath -ldflags=-s -o $(BIN)/polyvisor-agent-$$a ./cmd/polyvisor-agent || exit 1; \
		CGO_ENABLED=0 GOARCH=$$a GOARM=7 $(GO) build -trimpath -ldflags=-s -o $(BIN)/polyvisor-probe-$$a ./cmd/polyvisor-probe || exit 1; done

# The web console's files, which the daemon embeds (node and npm, with
# web/package-lock.json).
webui:
	bash scripts/webui.sh

deps:
	bash scripts/deps.sh

# A fresh machine's rehearsal of make deps: scripts/deps.sh runs in a fresh
# minimal Debian root, then every declared host requirement must be there.
deps-check: deps build
	$(GO) run ./tools/deps-check --polyvisor $(BIN)/polyvisor --script scripts/deps.sh

demo: deps build
	bash scripts/demo.sh

# Every package but the end-to-end suite.
UNIT_PKGS = $$($(GO) list ./... | grep -v /test/e2e)
# The concurrency-heavy packages, run under the race detector by make test.
# All of UNIT_PKGS under -race took 48 min on this 2-core host (the drivers'
# real runc and QEMU suites 7-9 min each, peer 14 min): too long for
# make test, so the rest run without it.
RACE_PKGS := ./internal/daemon/... ./internal/network/... ./internal/monitor/... \
	./internal/qmp/... ./internal/procutil/... ./internal/agent/... ./internal/stream/... \
	./internal/runc/... ./internal/cli/... ./pkg/client/...
RACE_RE := /(internal/(daemon|network|monitor|qmp|procutil|agent|stream|runc|cli)|pkg/client)(/|$$)

# The fresh-machine rehearsal first, then every package's tests with the
# end-to-end suite against real runc and QEMU (root needed), in one run so
# that they share the cores, then the concurrency-heavy packages under the
# race detector.
test: deps build deps-check vet
	$(GO) test -count=1 -timeout 35m $$($(GO) list ./... | grep -Ev '$(RACE_RE)')
	$(MAKE) race

# Tests that need root or real runtimes call internal/testgate
# (RequireRoot, RequireLong, RootSkip), which skips them under -short with
# the reason printed: make unit is the rest, the daemon's logic and every
# parser, in a couple of minutes, as any user.
unit:
	$(GO) test -short -count=1 -timeout 10m $(UNIT_PKGS)

# RACE_PKGS under the race detector, which needs cgo (CGO_ENABLED=1 and a
# C compiler).
race:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)

# The end-to-end suite: it builds the binaries and a busybox and a Debian
# template itself (root needed; without root it skips, saying so).
e2e:
	$(GO) test -count=1 -timeout 35m ./test/e2e/

# The crash-injection suite at length (make test runs it with 64 kills):
# STRESS_KILLS kills of the daemon mid-operation, replayed with STRESS_SEED
# (the seed is printed either way).
STRESS_KILLS ?= 500
STRESS_SEED  ?=
stress: build
	POLYVISOR_CRASH_KILLS=$(STRESS_KILLS) POLYVISOR_CRASH_SEED=$(STRESS_SEED) POLYVISOR_CRASH_TIME=3h \
		$(GO) test -count=1 -timeout 4h -run '^TestCrashInjection$$' -v ./test/e2e/

GOFMT_DIRS := cmd internal pkg test tools

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $(GOFMT_DIRS))" || (echo "gofmt needed (make fmt):"; gofmt -l $(GOFMT_DIRS); exit 1)

fmt:
	gofmt -w $(GOFMT_DIRS)

# golangci-lint pinned, built from the module proxy on first use (a few
# minutes, then cached); .golangci.yml says what it checks.
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
lint:
	$(GO) run $(GOLANGCI_LINT) run ./...

bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 20x -count 1 -timeout 30m ./test/bench/
	$(GO) test -run '^$$' -bench . -benchtime 5x -count 3 -timeout 10m ./internal/daemon/
	$(GO) test -run '^$$' -bench LiveMigration -benchtime 5x -count 1 -timeout 20m ./internal/driver/qemu/

# Every fuzz test, FUZZTIME each (make test runs their seed corpora only).
FUZZTIME ?= 15s
fuzz:
	@for f in $$(grep -rl --include='*_test.go' '^func Fuzz' internal); do \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9]*' $$f | cut -d' ' -f2); do \
			echo "== $$t ($$(dirname $$f))"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$(dirname $$f) || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN)
