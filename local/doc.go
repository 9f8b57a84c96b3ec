// Package local is the default L1 store of tiercache: an in-process cache on
// ristretto v2 holding typed values (an L1 hit never decodes bytes) with a
// per-entry TTL and the generation guard of the consistency protocol.
//
// # Generation guard
//
// A Store keeps a fixed array of atomic counters (stripes, chosen by key hash)
// and a global epoch. A reader snapshots the key's generation (stripe counter
// plus epoch) before it reads L2, and fills L1 with Fill, which stores the
// value only if the generation is unchanged:
//
//  1. Invalidate increments the stripe counter, then deletes the key.
//  2. Flush increments the epoch, then clears the store.
//  3. Fill checks the generation, stores the value, then checks again and
//     removes the value if an invalidation slipped in between.
//
// So an invalidation that lands between a reader's L2 read and its L1 fill
// always wins. Both counters only grow, so their sum is unchanged exactly when
// neither moved; Generation returns that sum.
//
// A Store implements driver.Local (package tiered/driver).
// All methods are safe for concurrent use, on a nil *Store (which behaves as
// an always-empty store) and after Close.
package local
