#!/usr/bin/env bash
# test/httpconformance/run.sh — run the public HTTP cache conformance suite
# (the http-cache-tests package on npm, the CLI of github.com/http-tests/
# cache-tests) against the middleware: L1 + Redis L2 + invalidation bus,
# LocalTTL 10 s, in front of httputil.ReverseProxy to the suite's origin
# server.
#
# Needs: Go, Node >= 14 with npm (the package is installed from the npm
# registry into test/httpconformance/.suite on first use), and Redis: the
# repository's harness (test/redis.sh) is started unless
# TIERCACHE_REDIS_ADDR is already set, and stopped again at the end.
#
# Usage: test/httpconformance/run.sh [test-id] [-- cache flags]
#   with a test id, runs that test alone and prints the exchange.
#   cache flags go to the Go proxy (go run ./test/httpconformance -h).
#
# Environment:
#   CONFORMANCE_SUITE_VERSION  npm version of http-cache-tests (default 0.4.5)
#   CONFORMANCE_ORIGIN_PORT    the suite's origin server port (default 18000)
#   CONFORMANCE_CACHE_PORT     the cache's port (default 18080)
#   TIERCACHE_REDIS_PORT_BASE  ports of the Redis harness (see test/redis.sh)
#
# Output: the non-passing tests by kind, then the counts; the raw results
# are in test/httpconformance/.suite/results.json.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VERSION=${CONFORMANCE_SUITE_VERSION:-0.4.5}
ORIGIN_PORT=${CONFORMANCE_ORIGIN_PORT:-18000}
CACHE_PORT=${CONFORMANCE_CACHE_PORT:-18080}
WORK="$HERE/.suite"
SUITE="$WORK/node_modules/http-cache-tests"

TEST_ID=""
if [[ $# -gt 0 && $1 != "--" ]]; then
	TEST_ID=$1
	shift
fi
[[ ${1:-} == "--" ]] && shift
CACHE_FLAGS=("$@")

command -v node >/dev/null || { echo "run.sh: node is not installed" >&2; exit 2; }
command -v npm >/dev/null || { echo "run.sh: npm is not installed" >&2; exit 2; }

mkdir -p "$WORK"
if [[ ! -f $SUITE/package.json ]] || [[ $(node -p "require('$SUITE/package.json').version") != "$VERSION" ]]; then
	echo "+ npm install http-cache-tests@$VERSION (into $WORK)"
	[[ -f $WORK/package.json ]] || echo '{"private": true}' >"$WORK/package.json"
	(cd "$WORK" && npm install --no-audit --no-fund --loglevel=error "http-cache-tests@$VERSION")
fi

PIDS=()
STARTED_REDIS=""
cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $STARTED_REDIS ]]; then
		"$ROOT/test/redis.sh" stop || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${TIERCACHE_REDIS_ADDR:-} ]]; then
	"$ROOT/test/redis.sh" start
	STARTED_REDIS=1
	eval "$("$ROOT/test/redis.sh" env)"
fi

# wait_port PORT: until something listens on 127.0.0.1:PORT (30 s).
wait_port() {
	for ((i = 0; i < 300; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "run.sh: nothing listens on port $1" >&2
	return 1
}

echo "+ origin: node server/server.mjs on port $ORIGIN_PORT"
(cd "$SUITE" && exec env npm_config_protocol=http npm_config_port="$ORIGIN_PORT" \
	npm_config_pidfile="$WORK/server.pid" node server/server.mjs) >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
wait_port "$ORIGIN_PORT"

echo "+ cache: go run ./test/httpconformance on port $CACHE_PORT ${CACHE_FLAGS[*]:-}"
(cd "$ROOT" && go build -o "$WORK/httpconformance" ./test/httpconformance)
"$WORK/httpconformance" -listen "127.0.0.1:$CACHE_PORT" -origin "http://127.0.0.1:$ORIGIN_PORT" \
	-redis "$TIERCACHE_REDIS_ADDR" "${CACHE_FLAGS[@]}" >"$WORK/cache.log" 2>&1 &
PIDS+=($!)
wait_port "$CACHE_PORT"

cd "$SUITE"
if [[ -n $TEST_ID ]]; then
	env npm_config_base="http://127.0.0.1:$CACHE_PORT" npm_config_id="$TEST_ID" node --no-warnings cli.mjs
	exit 0
fi
echo "+ suite: node cli.mjs against http://127.0.0.1:$CACHE_PORT (takes a minute or two)"
env npm_config_base="http://127.0.0.1:$CACHE_PORT" npm_config_id="" npm_package_config_id="" \
	node --no-warnings cli.mjs >"$WORK/results.json"
node "$HERE/summarize.mjs" "$SUITE" "$WORK/results.json"
