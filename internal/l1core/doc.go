// Package l1core holds what the L1 stores of tiercache (package local on
// ristretto, package local/otter) share, so that the rules of the
// consistency protocol are written once:
//
//   - Guard, the generation guard of DESIGN §6.2: a fixed array of atomic
//     counters (stripes, chosen by key hash) plus a global epoch. Invalidate
//     increments the key's stripe, then deletes; Flush increments the epoch,
//     then clears; Fill checks the generation, stores, lets the map settle,
//     checks again and removes what it stored if an invalidation slipped in
//     between. An invalidation racing with a fill always wins.
//   - Config and its validation: the bounds (entries or cost), the cost
//     function, the keep-stale window, with one set of error messages.
//
// Each store keeps its own map and its own Get (the hit path must stay a
// direct, allocation-free call into the map), and wraps the errors of Build
// in its own ErrInvalidOption.
package l1core
