// Package debugpage is a live status page for tiercache: an http.Handler a
// service mounts, like net/http/pprof, that shows every cache and bus
// registered with it.
//
//	page, err := debugpage.New(debugpage.WithTitle("products"))
//	defer page.Close()
//	page.AddGroup("main", group)     // a *tiercache.Group: its caches and bus
//	page.AddCache(users)             // or caches and buses built by hand
//	page.AddBus("main", bus)
//	mux.Handle("/debug/tiercache", page)
//
// For each cache it shows, over the last minute: the requests and hit ratio
// of L1 and of L2, loader calls (not found, failed), L2 errors and lease
// waits with their mean duration; and now: L1 entries and cost, loads and
// keys in flight, early refreshes running, and the circuit breaker's state
// per L2 shard. For each bus: whether it is healthy, its sent and received
// messages, gaps, flushes and publish-to-evict lag quantiles over the last
// minute; per channel its health, when it was last heard and the other
// buses (origins) heard on it with their last sequence numbers; and the
// recent flushes with their reasons (gap, resubscribe, silence, remote).
//
// The HTML (the default) is for people: self-contained (no script, no
// style or font from elsewhere; a Content-Security-Policy says so),
// refreshed every 5 s, with every name escaped by html/template. The JSON
// (?format=json, the View type) is for tools.
//
// # Sampling
//
// The page samples the counters of its sources every interval (default
// 5 s, WithInterval) on one goroutine it owns, and keeps the samples of
// the last window (default one minute, WithWindow). A request compares
// the current counters with the oldest sample inside the window. So the
// page shows the last minute even to its first visitor, and its cost does
// not depend on how often it is looked at: one Stats call per source per
// interval. (Computing from snapshots taken on request instead would show
// nothing on a first visit, and a window that depends on when people
// looked.) Flush events are counted between two samples, so their times are
// known within one interval. The clock is injectable (WithClock); Close
// stops the goroutine.
//
// # Sources
//
// The page consumes small interfaces it declares: CacheSource (Status,
// which every *tiered.Cache[V] has), BusSource (Stats, which
// *invalidation.Bus has; its Status adds channels and origins) and
// GroupSource (which *tiercache.Group satisfies). Sources are compared by
// identity: pass pointers. A cache whose Status says it is closed leaves
// the page. The package keeps no package-level state: everything lives in
// the Page the service creates.
package debugpage
