// Package driver is the contract between a tiered cache and its stores: the
// L1 store (Local), the L2 store (Remote), the invalidation bus (Bus) and
// the clock, and the optional capabilities each may offer. It imports only
// the standard library, so an adapter depends on it and never on package
// tiered; packages local, remote and invalidation implement it.
//
// Like database/sql/driver, the contract is a small required interface per
// store plus optional interfaces the cache discovers with a type assertion
// when the cache is created. Each optional interface says what the cache
// does when a store lacks it; none is needed for correctness, only for
// fewer round trips or finer fault isolation:
//
//	store         optional interface    without it, the cache ...
//	Local         StaleLocal            refuses tiered.WithStaleIfError at New
//	Local         BatchFiller           fills a batch key by key (Fill)
//	Local         WrittenFiller         fills after a write with Fill
//	Local         Sizer                 reports no L1 size metrics
//	Remote        BatchWriter           writes a batch with Set, a few at a time
//	Remote        LeaseBatcher          takes and fills a batch's leases key by key
//	Remote        TagStore              refuses tags (tiered.ErrTagsUnsupported)
//	Remote        Sharder               keeps one circuit breaker for the whole store
//	Remote        PublishCarrier        publishes a write's invalidation after the write
//	Subscription  CarryingSubscription  publishes a write's invalidation after the write
//	Bus           LeaseWaker            waiters on a lease learn of its end by polling
//
// Errors a Remote returns may carry two marks the cache reads with
// errors.As: UnavailableError (the shard is down: it counts against the
// shard's breaker) and UnstorableError (the value can never be stored).
//
// Package tiered/drivertest holds the contract test suites of a Local, a
// Remote and a Bus (RunLocal, RunRemote, RunBus) that the repository's own
// stores pass and that an adapter runs in its own tests; package
// tiered/driver/memremote is an in-memory reference Remote.
package driver
