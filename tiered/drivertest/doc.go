// Package drivertest is the contract test suite of the stores a tiered
// cache runs on: RunLocal checks a driver.Local (an L1), RunRemote a
// driver.Remote (an L2), RunBus a driver.Bus (the invalidation bus), each
// with the optional interfaces of package tiered/driver the store
// implements. Every rule is a subtest named after it, so a failure says
// which rule the store breaks; a capability the store lacks is a skipped
// subtest.
//
// The repository's own stores pass the suites in their tests (packages
// local, local/otter, remote and invalidation against real Redis, and
// tiered/driver/memremote); an adapter of yours calls the suite from a test
// of its own:
//
//	func TestContract(t *testing.T) {
//		drivertest.RunRemote(t, drivertest.RemoteSuite{
//			New: func(t *testing.T) driver.Remote { return mystore.New(...) },
//		})
//	}
//
// The package imports only tiered/driver and the standard library (with
// package testing): no Redis.
package drivertest
