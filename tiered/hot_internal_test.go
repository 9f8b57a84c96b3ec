package tiered

import (
	"hash/maphash"
	"strconv"
	"testing"
)

// TestHotKeysCounting: a key hit threshold times is hot in its window and
// the next one, not after; a key hit fewer times is not hot.
func TestHotKeysCounting(t *testing.T) {
	h := &hotKeys{seed: maphash.MakeSeed(), threshold: 10}
	h.window.Store(1)
	bucket := func(k string) uint64 { return maphash.String(h.seed, k) % hotBuckets }
	cold := "cold"
	for i := 0; bucket(cold) == bucket("hot"); i++ {
		cold = "cold" + strconv.Itoa(i) // a key with a counter of its own
	}
	for range 20 {
		h.hit("hot")
	}
	for range 9 {
		h.hit(cold)
	}
	if !h.hot("hot") {
		t.Fatal("20 hits: not hot")
	}
	if h.hot(cold) {
		t.Fatal("9 hits, threshold 10: hot")
	}
	if h.hot("never-read") && bucket("never-read") != bucket("hot") {
		t.Fatal("a key never read is hot")
	}
	h.window.Add(1)
	if !h.hot("hot") {
		t.Fatal("not hot in the window after its hits")
	}
	h.hit(cold) // a new window: counting starts again at 1
	if h.hot(cold) {
		t.Fatal("hot after 1 hit in a new window")
	}
	h.window.Add(1)
	if h.hot("hot") {
		t.Fatal("still hot two windows after its hits")
	}
}
