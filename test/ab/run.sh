#!/usr/bin/env bash
# test/ab/run.sh — interleaved before/after benchmarks of package tiered.
#
#   test/ab/run.sh OLD_REV NEW_REV ROUNDS BENCH_REGEXP BENCHTIME
#
# Builds the tiered test binary at both revisions (git worktrees under a
# temp dir), then runs ROUNDS rounds, each running the old binary then the
# new one on the same Redis harness (eval "$(test/redis.sh env)" first), and
# prints, per benchmark and metric, the median and range of the per-round
# new/old ratios (test/ab/stat.py). Example, as in docs/performance.md:
#
#   test/ab/run.sh fe0d7e8 HEAD 7 'GetOrLoadManyCold|GetOrLoadManyWarm|MissInterleaved' 300x
set -euo pipefail
(($# == 5)) || { sed -n 2,14p "$0" >&2; exit 2; }
old=$1 new=$2 rounds=$3 bench=$4 benchtime=$5
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; git -C "$root" worktree remove --force "$tmp/new" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
for v in old new; do
	git -C "$root" worktree add --detach "$tmp/$v" "${!v}" >/dev/null
	(cd "$tmp/$v/tiered" && go test -c -o "$tmp/$v.test" .)
done
log=$tmp/log
for r in $(seq 1 "$rounds"); do
	for v in old new; do
		(cd "$root/tiered" && "$tmp/$v.test" -test.run '^$' -test.bench "$bench" -test.benchtime "$benchtime" -test.benchmem) |
			grep '^Benchmark' | sed "s/^/$v $r /" | tee -a "$log"
	done
done
python3 "$root/test/ab/stat.py" "$log"
