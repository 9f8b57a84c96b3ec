// Package redistest connects tiercache's tests to real Redis servers.
//
// Everything in tiercache that talks to Redis is tested against real
// redis-server processes, never against a fake (the project's test standard:
// faults are real kills, pauses and partitions). Two kinds are available:
//
//   - Shared servers, started once per test run by test/redis.sh (which
//     `make test` runs for you): a 6-node Redis Cluster (3 primaries, 3
//     replicas) and a standalone server, all on loopback. Their addresses come
//     from the environment:
//
//     TIERCACHE_REDIS_ADDR     host:port of the standalone server
//     TIERCACHE_CLUSTER_ADDRS  comma-separated host:port of the cluster nodes
//
//     [Standalone], [StandaloneAddr], [Cluster] and [ClusterAddrs] read them.
//
//   - Private servers, started by [NewServer] for one test: a redis-server
//     process from PATH on a free loopback port, which the test may stop
//     ([Server.Stop]), restart ([Server.Start]), pause and resume, without
//     disturbing any other test; [NewCluster] starts a private Cluster and
//     [NewSentinel] a private Sentinel deployment (a primary, a replica and
//     three sentinels) that a test may fail over.
//
// A test that needs Redis and finds none fails with [Hint], which says how to
// start it; it never skips silently. Only `go test -short` skips such tests.
//
// # Sharing the servers
//
// The packages of a module are tested in parallel processes that all use the
// same shared servers. So tests:
//
//   - prefix every key and channel with [Name], which is unique per test and
//     per run;
//   - never run FLUSHALL, FLUSHDB, CONFIG SET, SHUTDOWN, DEBUG SLEEP longer
//     than a few hundred milliseconds, or anything else that changes the
//     servers for other tests, on the shared servers;
//   - use [NewServer] for fault tests that stop, restart, pause or reconfigure
//     Redis.
//
// The shared servers have no persistence, allow DEBUG from loopback, and the
// cluster uses cluster-node-timeout 2000 (a failed primary is replaced by its
// replica within a few seconds).
//
// # Running the tests
//
//	make test                                       # start, test, stop
//	test/redis.sh start && eval "$(test/redis.sh env)"
//	go test -race ./...                             # as often as you like
//	test/redis.sh stop
//
// All functions are safe for concurrent use by parallel tests; a [Server] is
// safe for concurrent use by multiple goroutines.
package redistest
