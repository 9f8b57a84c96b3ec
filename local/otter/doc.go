// Package otter is an L1 store for tiercache on otter v2
// (github.com/maypok86/otter/v2), an alternative to the ristretto default of
// package local: otter's S3-FIFO-style policy keeps a higher hit ratio on
// skewed workloads and its reads are faster, at the price of a second
// dependency. Both satisfy driver.Local with the same contract:
//
//   - typed values: an L1 hit never decodes bytes, allocates nothing and takes
//     no lock of this package;
//   - a per-entry TTL (tiered passes min(LocalTTL, remaining L2 TTL));
//   - the generation guard of the consistency protocol: a fixed array of
//     atomic counters (stripes, chosen by key hash) plus a global epoch.
//     Invalidate increments the stripe counter, then deletes the key; Flush
//     increments the epoch, then clears the store; Fill checks the generation,
//     stores, then checks again and removes what it stored if an invalidation
//     slipped in between. So an invalidation that lands between a reader's L2
//     read and its L1 fill always wins.
//
// Unlike ristretto, otter applies a write to its hash table synchronously:
// Fill does not wait for a buffer to drain, and the next Get sees the entry.
// Eviction to the size bound runs in otter's maintenance, shortly after.
//
// Use it with tiered.New:
//
//	l1, err := otter.New[User](otter.WithMaxEntries(50_000))
//	if err != nil { ... }
//	c, err := tiered.New[User]("users", l1, l2)
//
// A Store implements driver.Local (package tiered/driver).
// All methods are safe for concurrent use, on a nil *Store (which behaves as
// an always-empty store) and after Close.
package otter
