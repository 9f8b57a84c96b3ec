#!/usr/bin/env bash
# test/redis.sh — the real-Redis harness for tiercache's tests.
#
# Starts, on 127.0.0.1:
#   * a 6-node Redis Cluster on ports 7000-7005 (3 primaries, 3 replicas), and
#   * a standalone redis-server on port 7010,
# using Debian's redis-server when it is installed, or `docker compose`
# (../docker-compose.yml) when a Docker engine answers instead. When neither
# is there, it installs redis-server and redis-tools with apt-get (as root,
# or through password-less sudo), printing what it runs; elsewhere it prints
# the command to run (macOS: brew install redis).
#
# Usage: test/redis.sh start|stop|env|status
#
#   start   start everything and wait until the cluster is healthy (every node
#           says cluster_state:ok, all 16384 slots are covered, 3 primaries and
#           3 replicas are connected and every replica is in sync). Idempotent:
#           a healthy harness is left alone; a broken or stale one is cleaned
#           up and started from scratch.
#   stop    shut every node down and remove its data directory.
#   env     print the exports the Go tests read:
#             eval "$(test/redis.sh env)"
#   status  print what is running; exit 0 only if the harness is healthy.
#
# Environment:
#   TIERCACHE_REDIS_LEASE          pid of the process using the harness (set
#                                  by the Makefile): start records it, and stop
#                                  then leaves the harness running while others
#                                  still use it (live pids, or a start by hand)
#   TIERCACHE_REDIS_PORT_BASE      run a second, independent harness on other
#                                  ports (local mode only): cluster on
#                                  BASE..BASE+5, standalone on BASE+10, state in
#                                  test/.redis-BASE/ (default 7000)
#   TIERCACHE_REDIS_MODE           force "local" or "docker" (default: local
#                                  when redis-server is in PATH, else docker)
#   TIERCACHE_REDIS_START_TIMEOUT  seconds to wait for health (default 60)
#   TIERCACHE_REDIS_NO_INSTALL     set to 1 to never install packages
#
# Node directories (config, pid, log, nodes.conf) live in test/.redis/<port>/.
# Tests must never FLUSHALL these shared servers: namespace keys with
# internal/redistest.Name, and use redistest.NewServer for tests that stop or
# restart Redis.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
COMPOSE_FILE="$ROOT/docker-compose.yml"
COMPOSE_PROJECT=tiercache-test

HOST=127.0.0.1
BASE=${TIERCACHE_REDIS_PORT_BASE:-7000}
[[ $BASE =~ ^[0-9]+$ ]] && ((BASE >= 1024 && BASE <= 65000)) ||
	{ echo "redis.sh: TIERCACHE_REDIS_PORT_BASE must be a port number" >&2; exit 2; }
CLUSTER_PORTS=()
for ((i = 0; i < 6; i++)); do CLUSTER_PORTS+=($((BASE + i))); done
STANDALONE_PORT=$((BASE + 10))
if ((BASE == 7000)); then
	STATE="$HERE/.redis"
	LOCK="$HERE/.redis.lock"
else
	STATE="$HERE/.redis-$BASE"
	LOCK="$HERE/.redis-$BASE.lock"
fi
ALL_PORTS=("${CLUSTER_PORTS[@]}" "$STANDALONE_PORT")
TIMEOUT=${TIERCACHE_REDIS_START_TIMEOUT:-60}

# install_command prints the command that installs redis-server and
# redis-cli on this system.
install_command() {
	if [[ $(uname -s) == Darwin ]]; then
		echo "brew install redis"
	elif command -v apt-get >/dev/null 2>&1; then
		if [[ $(id -u) == 0 ]]; then
			echo "apt-get update && apt-get install -y redis-server redis-tools"
		else
			echo "sudo apt-get update && sudo apt-get install -y redis-server redis-tools"
		fi
	elif command -v dnf >/dev/null 2>&1; then
		echo "sudo dnf install -y redis"
	elif command -v apk >/dev/null 2>&1; then
		echo "sudo apk add redis"
	else
		echo "install Redis 7 or newer (redis-server and redis-cli) with your package manager"
	fi
}

INSTALL_HELP="Install Redis 7 and retry:
    $(install_command)
or start a Docker engine (docker info must succeed) so that
    docker compose -f $COMPOSE_FILE up -d
can run the cluster in containers."

log() { printf 'redis.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- mode

# compose_cmd sets COMPOSE_CMD to docker compose (v2 plugin) or docker-compose
# (v1), with this harness's project name and compose file.
COMPOSE_CMD=()
compose_cmd() {
	if docker compose version >/dev/null 2>&1; then
		COMPOSE_CMD=(docker compose -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE")
	elif command -v docker-compose >/dev/null 2>&1; then
		COMPOSE_CMD=(docker-compose -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE")
	else
		die "a Docker engine answers but neither 'docker compose' nor 'docker-compose' is installed.
$INSTALL_HELP"
	fi
}

docker_usable() {
	command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1
}

# have_local reports whether redis-server and redis-cli are in PATH.
have_local() {
	command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1
}

# try_install installs redis-server and redis-tools with apt-get when it can
# do so without asking: as root, or through sudo without a password. It
# prints every command it runs. TIERCACHE_REDIS_NO_INSTALL=1 turns it off.
try_install() {
	[[ -z ${TIERCACHE_REDIS_NO_INSTALL:-} ]] || return 1
	command -v apt-get >/dev/null 2>&1 || return 1
	local sudo=()
	if [[ $(id -u) != 0 ]]; then
		command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || return 1
		sudo=(sudo -n)
	fi
	log "redis-server or redis-cli is missing; installing them:"
	log "+ ${sudo[*]}${sudo:+ }apt-get update"
	"${sudo[@]}" apt-get update >&2 || return 1
	log "+ ${sudo[*]}${sudo:+ }env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools >&2 || return 1
	hash -r
	have_local
}

# detect_mode prints local or docker, or fails with installation instructions.
detect_mode() {
	case "${TIERCACHE_REDIS_MODE:-}" in
	local)
		have_local || try_install ||
			die "TIERCACHE_REDIS_MODE=local but redis-server or redis-cli is not in PATH.
$INSTALL_HELP"
		echo local
		return
		;;
	docker)
		docker_usable || die "TIERCACHE_REDIS_MODE=docker but 'docker info' fails (is the engine running?).
$INSTALL_HELP"
		echo docker
		return
		;;
	"") ;;
	*) die "TIERCACHE_REDIS_MODE must be local or docker, not '$TIERCACHE_REDIS_MODE'" ;;
	esac
	if have_local; then
		echo local
	elif docker_usable; then
		echo docker
	elif try_install; then
		echo local
	else
		die "redis-server and redis-cli (in PATH) and a running Docker engine were not found, and they could not be installed automatically (needs apt-get and root or password-less sudo).
$INSTALL_HELP"
	fi
}

# current_mode is the mode of the harness that is (or was last) running.
current_mode() {
	if [[ -f "$STATE/mode" ]]; then
		cat "$STATE/mode"
	else
		detect_mode
	fi
}

MODE=

# rcli PORT ARGS... runs redis-cli against a node, with a time limit so that a
# hung or SIGSTOPped node cannot hang the script.
rcli() {
	local port=$1
	shift
	if [[ $MODE == docker ]] && ! command -v redis-cli >/dev/null 2>&1; then
		timeout 10 "${COMPOSE_CMD[@]}" exec -T "redis-$port" redis-cli -h "$HOST" -p "$port" "$@"
	else
		timeout 3 redis-cli -h "$HOST" -p "$port" "$@"
	fi
}

port_answers() { [[ $(rcli "$1" ping 2>/dev/null) == PONG ]]; }

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# ---------------------------------------------------------------- health

# why_unhealthy prints the first reason the harness is not healthy and returns
# 1, or prints nothing and returns 0.
why_unhealthy() {
	local port info nodes masters slaves bad repl listed
	port_answers "$STANDALONE_PORT" || {
		echo "standalone $HOST:$STANDALONE_PORT does not answer PING"
		return 1
	}
	for port in "${CLUSTER_PORTS[@]}"; do
		info=$(rcli "$port" cluster info 2>&1 | tr -d '\r') || {
			echo "node $port: $info"
			return 1
		}
		grep -q '^cluster_state:ok$' <<<"$info" || {
			echo "node $port: $(grep '^cluster_state' <<<"$info" || echo "$info")"
			return 1
		}
		grep -q '^cluster_slots_ok:16384$' <<<"$info" || {
			echo "node $port: $(grep '^cluster_slots_ok' <<<"$info") of 16384 slots ok"
			return 1
		}
		grep -q '^cluster_known_nodes:6$' <<<"$info" || {
			echo "node $port: $(grep '^cluster_known_nodes' <<<"$info") (want 6)"
			return 1
		}
		nodes=$(rcli "$port" cluster nodes 2>&1 | tr -d '\r') || {
			echo "node $port: $nodes"
			return 1
		}
		masters=$(awk '$3 ~ /master/' <<<"$nodes" | wc -l)
		slaves=$(awk '$3 ~ /slave/' <<<"$nodes" | wc -l)
		bad=$(awk '$3 ~ /fail|handshake|noaddr/ || $8 != "connected"' <<<"$nodes")
		if ((masters != 3 || slaves != 3)) || [[ -n $bad ]]; then
			echo "node $port sees $masters masters, $slaves replicas${bad:+, unhealthy: $bad}"
			return 1
		fi
		# Every primary must have exactly one replica.
		if [[ $(awk '$3 ~ /slave/ {print $4}' <<<"$nodes" | sort -u | wc -l) != 3 ]]; then
			echo "node $port: replicas are not spread one per primary"
			return 1
		fi
		# CLUSTER SLOTS (what clients route by) lists a replica only once
		# gossip told this node the replica's replication offset: wait for
		# all 6 nodes to be listed, or clients start without the replicas.
		listed=$(rcli "$port" cluster slots 2>/dev/null | tr -d '\r' | grep -cx "$HOST")
		if ((listed != 6)); then
			echo "node $port: CLUSTER SLOTS lists $listed of 6 nodes"
			return 1
		fi
		repl=$(rcli "$port" info replication 2>&1 | tr -d '\r')
		if grep -q '^role:slave$' <<<"$repl"; then
			grep -q '^master_link_status:up$' <<<"$repl" &&
				grep -q '^master_sync_in_progress:0$' <<<"$repl" || {
				echo "replica $port not in sync: $(grep -E '^master_(link_status|sync_in_progress)' <<<"$repl" | tr '\n' ' ')"
				return 1
			}
		fi
	done
	return 0
}

healthy() { why_unhealthy >/dev/null; }

print_diagnostics() {
	local port dir
	log "diagnostics:"
	for port in "${CLUSTER_PORTS[@]}"; do
		echo "--- CLUSTER NODES on $port:" >&2
		rcli "$port" cluster nodes >&2 2>&1 || true
	done
	if [[ $MODE == docker ]]; then
		"${COMPOSE_CMD[@]}" ps -a >&2 || true
		"${COMPOSE_CMD[@]}" logs --tail 30 >&2 || true
		return
	fi
	for port in "${ALL_PORTS[@]}"; do
		dir="$STATE/$port"
		if [[ -f $dir/redis.log ]]; then
			echo "--- tail $dir/redis.log" >&2
			tail -n 25 "$dir/redis.log" >&2
		fi
	done
	if [[ -f $STATE/cluster-create.log ]]; then
		echo "--- $STATE/cluster-create.log" >&2
		tail -n 40 "$STATE/cluster-create.log" >&2
	fi
}

# wait_healthy waits until the harness is healthy or the deadline passes.
wait_healthy() {
	local deadline=$((SECONDS + TIMEOUT)) why=
	while ! why=$(why_unhealthy); do
		if ((SECONDS >= deadline)); then
			log "the Redis harness did not become healthy within ${TIMEOUT}s: $why"
			print_diagnostics
			return 1
		fi
		sleep 0.2
	done
}

# wait_ports_answer waits until every node answers PING.
wait_ports_answer() {
	local deadline=$((SECONDS + TIMEOUT)) port
	for port in "${ALL_PORTS[@]}"; do
		until port_answers "$port"; do
			if ((SECONDS >= deadline)); then
				log "redis on port $port did not answer PING within ${TIMEOUT}s"
				print_diagnostics
				return 1
			fi
			sleep 0.1
		done
	done
}

# ---------------------------------------------------------------- local mode

write_conf() {
	local port=$1 dir="$STATE/$1"
	mkdir -p "$dir"
	cat >"$dir/redis.conf" <<EOF
# generated by test/redis.sh
port $port
bind $HOST
protected-mode yes
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
save ""
appendonly no
enable-debug-command local
# Start replication immediately instead of waiting for more replicas.
repl-diskless-sync-delay 0
EOF
	if [[ $port != "$STANDALONE_PORT" ]]; then
		cat >>"$dir/redis.conf" <<EOF
cluster-enabled yes
cluster-config-file $dir/nodes.conf
cluster-node-timeout 2000
# Fault tests kill primaries: let a replica take over however stale it is.
cluster-replica-validity-factor 0
EOF
	fi
}

# alive PID: whether the process exists and is not a zombie (an exited daemon
# stays a zombie until init reaps it, which some container inits do late).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# our_pids prints the pids recorded in the node directories that are still
# redis-server processes.
our_pids() {
	local f pid
	for f in "$STATE"/*/redis.pid; do
		[[ -f $f ]] || continue
		pid=$(cat "$f" 2>/dev/null || true)
		[[ $pid =~ ^[0-9]+$ ]] || continue
		alive "$pid" || continue
		# Guard against a recycled pid (where /proc exists).
		if [[ -d /proc/$pid ]] && ! grep -q redis "/proc/$pid/comm" 2>/dev/null; then
			continue
		fi
		echo "$pid"
	done
}

# ours PORT: whether the redis on PORT was started by this harness (its config
# file lives under test/.redis), so that stop never shuts down anybody else's.
ours() {
	local cf
	cf=$(rcli "$1" info server 2>/dev/null | tr -d '\r' | sed -n 's/^config_file://p')
	[[ $cf == "$STATE/"* ]]
}

local_stop() {
	local port pid pids deadline
	pids=$(our_pids)
	for pid in $pids; do kill -CONT "$pid" 2>/dev/null || true; done
	# Shut the nodes down in parallel, so that a hung one costs one timeout.
	for port in "${ALL_PORTS[@]}"; do
		{ if ours "$port"; then rcli "$port" shutdown nosave now >/dev/null 2>&1 || true; fi; } &
	done
	wait
	# Kill what is left (a node busy in DEBUG SLEEP, say) by pidfile.
	deadline=$((SECONDS + 3))
	for pid in $pids; do
		while alive "$pid"; do
			if ((SECONDS >= deadline)); then
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.05
		done
	done
	# Wait for SIGKILLed ones to be gone, so their ports are free.
	deadline=$((SECONDS + 5))
	for pid in $pids; do
		while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
	done
	rm -rf "$STATE"
}

local_start() {
	local port busy=()
	log "starting Redis Cluster on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[5]} and standalone on $HOST:$STANDALONE_PORT ($(redis-server --version | awk '{print $3}'))"
	for port in "${ALL_PORTS[@]}"; do
		port_busy "$port" && busy+=("$port")
	done
	if ((${#busy[@]})); then
		die "port(s) ${busy[*]} on $HOST are in use by processes this harness did not start; stop them (e.g. redis-cli -p PORT shutdown nosave) and retry"
	fi
	mkdir -p "$STATE"
	echo local >"$STATE/mode"
	for port in "${ALL_PORTS[@]}"; do
		write_conf "$port"
		# 9>&-: the daemon must not inherit (and so hold forever) the lock.
		redis-server "$STATE/$port/redis.conf" 9>&- || {
			print_diagnostics
			die "redis-server on port $port failed to start"
		}
	done
	wait_ports_answer
	local addrs=()
	for port in "${CLUSTER_PORTS[@]}"; do addrs+=("$HOST:$port"); done
	if ! timeout "$TIMEOUT" redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
		>"$STATE/cluster-create.log" 2>&1; then
		log "redis-cli --cluster create failed"
		print_diagnostics
		exit 1
	fi
	wait_healthy
}

# ---------------------------------------------------------------- docker mode

docker_start() {
	((BASE == 7000)) || die "TIERCACHE_REDIS_PORT_BASE is not supported with docker compose (its ports are fixed)"
	log "starting Redis Cluster and standalone with docker compose ($COMPOSE_FILE)"
	mkdir -p "$STATE"
	echo docker >"$STATE/mode"
	"${COMPOSE_CMD[@]}" up -d --remove-orphans 9>&-
	wait_ports_answer
	wait_healthy
}

docker_stop() {
	"${COMPOSE_CMD[@]}" down -v --remove-orphans --timeout 5 || true
	rm -rf "$STATE"
}

# ---------------------------------------------------------------- commands

with_lock() {
	exec 9>"$LOCK"
	if command -v flock >/dev/null 2>&1; then
		flock -w 120 9 || die "timed out waiting for $LOCK"
	fi
}

setup_mode() {
	MODE=$1
	if [[ $MODE == docker ]]; then compose_cmd; fi
}

# Leases let several users of one working tree share the harness. A start
# with TIERCACHE_REDIS_LEASE=<pid of a process that lives as long as the run>
# (the Makefile does this) records that pid; a start without it (by hand, or
# make redis-up) records a "manual" lease. A stop with TIERCACHE_REDIS_LEASE
# drops its own lease and shuts the harness down only when no other lease is
# left (dead pids do not count; "manual" does). A stop without it always shuts
# everything down.
LEASE=${TIERCACHE_REDIS_LEASE:-}
[[ -z $LEASE || $LEASE =~ ^[0-9]+$ ]] || die "TIERCACHE_REDIS_LEASE must be a pid, not '$LEASE'"

take_lease() {
	mkdir -p "$STATE/leases"
	: >"$STATE/leases/${LEASE:-manual}"
}

# other_leases prints the live leases other than ours, dropping dead ones.
other_leases() {
	local f pid
	for f in "$STATE"/leases/*; do
		[[ -f $f ]] || continue
		pid=${f##*/}
		[[ $pid == "$LEASE" ]] && continue
		if [[ $pid == manual ]] || alive "$pid"; then echo "$pid"; else rm -f "$f"; fi
	done
}

cmd_start() {
	with_lock
	local new
	new=$(detect_mode) || exit 1
	setup_mode "$new"
	if healthy; then
		log "already running and healthy"
		take_lease
		return 0
	fi
	# Stale or broken state from an earlier run: clean it up first. In local
	# mode this also finds nodes whose state directory was deleted (their
	# config_file still points into it).
	local old=local
	[[ -f $STATE/mode ]] && old=$(cat "$STATE/mode")
	if [[ -e $STATE || $old == local && $new == local ]]; then
		[[ -e $STATE ]] && log "cleaning up stale state in $STATE"
		if [[ $old == docker ]] && ! docker_usable; then
			rm -rf "$STATE" # its containers went away with the engine
		else
			setup_mode "$old"
			if [[ $MODE == docker ]]; then docker_stop; else local_stop; fi
			setup_mode "$new"
		fi
	fi
	local t0=$SECONDS
	if [[ $MODE == docker ]]; then docker_start; else local_start; fi
	take_lease
	log "ready in $((SECONDS - t0))s; run: eval \"\$($0 env)\""
}

cmd_stop() {
	with_lock
	local mode=local others
	if [[ -n $LEASE ]]; then
		rm -f "$STATE/leases/$LEASE"
		others=$(other_leases)
		if [[ -n $others ]]; then
			log "still in use (leases: $(echo $others)); leaving it running"
			return 0
		fi
	fi
	if [[ -f $STATE/mode ]]; then
		mode=$(cat "$STATE/mode")
	elif ! command -v redis-cli >/dev/null 2>&1; then
		rm -rf "$STATE"
		log "not running"
		return 0
	fi
	setup_mode "$mode"
	if [[ $MODE == docker ]]; then docker_stop; else local_stop; fi
	log "stopped"
}

cmd_env() {
	local addrs=() port
	for port in "${CLUSTER_PORTS[@]}"; do addrs+=("$HOST:$port"); done
	echo "export TIERCACHE_REDIS_ADDR=$HOST:$STANDALONE_PORT"
	echo "export TIERCACHE_CLUSTER_ADDRS=$(
		IFS=,
		echo "${addrs[*]}"
	)"
}

cmd_status() {
	local port why mode
	mode=$(current_mode) || exit 1
	setup_mode "$mode"
	echo "mode: $MODE"
	for port in "${ALL_PORTS[@]}"; do
		if port_answers "$port"; then
			printf '%s:%s  up  %s\n' "$HOST" "$port" \
				"$(rcli "$port" info replication 2>/dev/null | tr -d '\r' | sed -n 's/^role://p')"
		else
			printf '%s:%s  down\n' "$HOST" "$port"
		fi
	done
	if why=$(why_unhealthy); then
		echo "healthy"
	else
		echo "unhealthy: $why"
		return 1
	fi
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
status) cmd_status ;;
*)
	echo "usage: $0 start|stop|env|status" >&2
	exit 2
	;;
esac
