// Package drivertest is the contract test suite of the stores a tiered
// cache runs on: RunLocal checks a driver.Local (an L1), RunRemote a
// driver.Remote (an L2), RunBus a driver.Bus (the invalidation bus), each
// with the optional interfaces of package tiered/driver the store
// implements. Every rule is a subtest named after it, so a failure says
// which rule the store breaks (go test -v lists them); a capability the
// store lacks, or a check that needs a suite field left nil, is a skipped
// subtest. The rules are those stated in the doc comments of package
// tiered/driver.
//
// An adapter calls the suite from a test of its own, with a constructor
// for its store:
//
//	func TestContract(t *testing.T) {
//		drivertest.RunRemote(t, drivertest.RemoteSuite{
//			New: func(t *testing.T) driver.Remote { return mystore.New(...) },
//		})
//	}
//
// What each suite needs beyond the constructor: RunLocal a way to make
// values when V is not string (LocalSuite.Value); RunRemote a key prefix
// on a shared server and, optionally, a clock it can move
// (RemoteSuite.Clock, Advance), an unstorable payload and a way to write a
// corrupt value; RunBus n connected nodes per subtest (BusSuite.Nodes) and,
// optionally, a fault hook losing a message (Lossy) and a store-side send
// for carried messages (Carrier).
//
// The repository's own stores pass the suites in their tests: packages
// local and local/otter (RunLocal), remote on a standalone Redis and a
// Redis Cluster and tiered/driver/memremote (RunRemote), invalidation on
// Redis pub/sub (RunBus). Package tiered/driver/memremote, the in-memory
// reference Remote, is the shortest reading of the L2 rules in code.
//
// The package imports only tiered/driver and the standard library (with
// package testing): no Redis. The suites run their subtests one after the
// other; a store's concurrency is checked inside the subtests that race
// calls on purpose.
package drivertest
