// Package memremote is an in-memory reference implementation of
// driver.Remote: one process's map under a mutex, with the batch, lease and
// tag capabilities (driver.BatchWriter, driver.LeaseBatcher,
// driver.TagStore) and expiries on a driver.Clock the caller may control.
//
// It is the executable reading of the L2 contract: every rule package
// tiered/drivertest checks, stated once in code without a network in the
// way, so an adapter author can compare their store with it. It also
// serves as the L2 of tests that need one without Redis. It is not a
// shared store: caches in different processes each see their own map.
//
// It is a package of its own, not part of tiered/drivertest, so that
// programs and examples can use it without importing package testing.
//
// A Store is safe for concurrent use; every method runs under one mutex,
// so each call (a batch included) is atomic, as a Redis script is.
package memremote
