# tiercache — build and test entry points.
#
#   make test        start the Redis harness (test/redis.sh), run every test
#                    with -race against it (root module and example/), stop it
#   make test-short  unit tests only (-short), no Redis needed
#   make bench       benchmarks, with the Redis harness up
#   make bench-peers tiercache side by side with other caches (test/peers, its
#                    own module): writes docs/peers.md and docs/peers.svg
#   make redis-up    start the harness and keep it running; then
#                    eval "$$(test/redis.sh env)" && go test -race ./...
#   make redis-down  stop it (make redis-status: is it healthy?)
#
# Variables: GO (go), TESTFLAGS (extra go test flags, e.g. -run X -v),
# BENCH (benchmark regexp, default .), KEEP_REDIS=1 (leave the harness running
# after test/bench).

SHELL     := /bin/bash
GO        ?= go
REDIS     := test/redis.sh
TESTFLAGS ?=
BENCH     ?= .
KEEP_REDIS ?=

# REDIS_UP starts a recipe that needs the harness: it starts test/redis.sh,
# exports TIERCACHE_*, and makes sure the harness is stopped when the recipe
# ends, also when the tests fail or are interrupted; the recipe collects its
# commands' failures in rc and ends with `exit $$rc`. The pid of the recipe's
# shell is its harness lease: a concurrent `make test` in the same tree keeps
# the harness alive until both are done.
REDIS_UP = set -uo pipefail; \
	export TIERCACHE_REDIS_LEASE=$$$$; \
	rc=0; \
	trap 'if [ -z "$(KEEP_REDIS)" ]; then $(REDIS) stop || true; fi' EXIT; \
	trap 'exit 130' INT TERM; \
	$(REDIS) start || exit $$?; \
	eval "$$($(REDIS) env)";

GOTEST = $(GO) test -race -count=1 -timeout 12m $(TESTFLAGS) ./...

.PHONY: test
test:
	@$(REDIS_UP) \
	echo "+ $(GOTEST)"; \
	$(GOTEST) || rc=$$?; \
	if [ -f example/go.mod ]; then \
		echo "+ cd example && $(GOTEST)"; \
		(cd example && $(GOTEST)) || rc=$$?; \
	fi; \
	exit $$rc

.PHONY: test-short
test-short:
	@set -uo pipefail; rc=0; \
	$(GO) test -short -race $(TESTFLAGS) ./... || rc=$$?; \
	if [ -f example/go.mod ]; then \
		(cd example && $(GO) test -short -race $(TESTFLAGS) ./...) || rc=$$?; \
	fi; \
	exit $$rc

.PHONY: bench
bench:
	@$(REDIS_UP) \
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem $(TESTFLAGS) ./... || rc=$$?; \
	exit $$rc

# PEERS_FLAGS: extra flags of test/peers (e.g. -rounds 9, -only writes).
PEERS_FLAGS ?=

.PHONY: bench-peers
bench-peers:
	@$(REDIS_UP) \
	mkdir -p docs; \
	(cd test/peers && GOWORK=off $(GO) run . -md ../../docs/peers.md -svg ../../docs/peers.svg $(PEERS_FLAGS)) || rc=$$?; \
	exit $$rc

.PHONY: redis-up
redis-up:
	@$(REDIS) start
	@echo 'now: eval "$$($(REDIS) env)"'

.PHONY: redis-down
redis-down:
	@$(REDIS) stop

.PHONY: redis-status
redis-status:
	@$(REDIS) status
