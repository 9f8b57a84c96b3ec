// Package localtest holds the contract tests every driver.Local
// implementation must pass (package local on ristretto, package local/otter):
// fill and read back, the generation guard against a racing invalidation or
// flush, per-entry TTL, the zero-allocation hit, nil and closed safety. An
// implementation's tests call Run with a constructor.
package localtest

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// Store is the implementation under test. Close must stop every goroutine
// the store started (the TTL test runs it in a synctest bubble).
type Store = driver.Local[string]

// Suite describes an implementation.
type Suite struct {
	// New returns a fresh, empty store with room for at least 10,000 entries.
	// Run closes it.
	New func(t *testing.T) Store
	// Nil is the implementation's nil pointer as a Store: every method must
	// be safe on it and behave as on an empty store.
	Nil Store
	// KeepStale, when not nil, returns a fresh store that keeps entries for
	// d past their TTL; it must implement driver.StaleLocal. Stores created
	// by New must keep nothing past the TTL.
	KeepStale func(t *testing.T, d time.Duration) Store
}

// Run runs the contract tests as subtests of t.
func Run(t *testing.T, s Suite) {
	open := func(t *testing.T) Store {
		t.Helper()
		st := s.New(t)
		t.Cleanup(st.Close)
		return st
	}
	t.Run("FillThenGet", func(t *testing.T) { fillThenGet(t, open(t)) })
	t.Run("FillReplaces", func(t *testing.T) { fillReplaces(t, open(t)) })
	t.Run("GenerationGuard", func(t *testing.T) { generationGuard(t, open) })
	t.Run("InvalidationRacingFillWins", func(t *testing.T) { racingFill(t, open(t)) })
	t.Run("InvalidateOtherKeyKeepsGeneration", func(t *testing.T) { otherKeys(t, open(t)) })
	t.Run("InvalidateAndFlushEvict", func(t *testing.T) { evict(t, open(t)) })
	t.Run("PerEntryTTL", func(t *testing.T) { perEntryTTL(t, s.New) })
	t.Run("NilAndClosedSafe", func(t *testing.T) { nilAndClosed(t, s) })
	t.Run("GetDoesNotAllocate", func(t *testing.T) { noAlloc(t, open(t)) })
	t.Run("FillMany", func(t *testing.T) { fillMany(t, open(t)) })
	if s.KeepStale != nil {
		t.Run("KeepStale", func(t *testing.T) { keepStale(t, s) })
	}
}

// keepStale checks the keep-stale window: past its TTL an entry is gone for
// Get but GetStale returns it with the end of its TTL, for entries written
// by Fill and by FillMany; a store without the window returns nothing.
func keepStale(t *testing.T, suite Suite) {
	synctest.Test(t, func(t *testing.T) {
		s := suite.KeepStale(t, time.Hour)
		defer s.Close()
		stale, ok := s.(driver.StaleLocal[string])
		if !ok {
			t.Fatalf("%T does not implement driver.StaleLocal", s)
		}
		start := time.Now()
		fill(t, s, "one", "v1", false, 50*time.Millisecond)
		if mf, ok := s.(ManyFiller); ok {
			gen := s.Generation("many")
			if n := mf.FillMany(1, func(int) (string, string, bool, time.Duration, uint64) {
				return "many", "v2", false, 50 * time.Millisecond, gen
			}); n != 1 {
				t.Fatalf("FillMany stored %d entries, want 1", n)
			}
		}
		time.Sleep(time.Second)
		for _, k := range []string{"one", "many"} {
			if _, ok := s.(ManyFiller); !ok && k == "many" {
				continue
			}
			if _, _, ok := s.Get(k); ok {
				t.Errorf("Get(%s) returned an entry 1 s after its 50 ms TTL", k)
			}
			v, absent, expiredAt, ok := stale.GetStale(k)
			want := map[string]string{"one": "v1", "many": "v2"}[k]
			if !ok || absent || v != want || !expiredAt.Equal(start.Add(50*time.Millisecond)) {
				t.Errorf("GetStale(%s) = %q, %v, %v, %v; want %q ending at %v", k, v, absent, expiredAt, ok, want, start.Add(50*time.Millisecond))
			}
		}
		s.Invalidate("one")
		if _, _, _, ok := stale.GetStale("one"); ok {
			t.Error("GetStale returned an invalidated entry")
		}
		plain := suite.New(t)
		defer plain.Close()
		fill(t, plain, "k", "v", false, time.Hour)
		if ps, ok := plain.(driver.StaleLocal[string]); ok {
			if _, _, _, ok := ps.GetStale("k"); ok {
				t.Error("a store without the keep-stale window returned an entry from GetStale")
			}
		}
	})
}

// ManyFiller is the optional batch fill of an L1 store (tiered uses it for
// the results of GetOrLoadMany when the store offers it).
type ManyFiller interface {
	FillMany(n int, at func(i int) (key string, value string, absent bool, ttl time.Duration, gen uint64)) int
}

// fillMany checks FillMany, when the store has it: every entry as Fill
// would store it, the stale ones (generation moved, ttl 0) skipped, and an
// invalidation racing with the batch wins.
func fillMany(t *testing.T, s Store) {
	m, ok := s.(ManyFiller)
	if !ok {
		t.Skipf("%T has no FillMany", s)
	}
	type entry struct {
		key, value string
		absent     bool
		ttl        time.Duration
		gen        uint64
	}
	var es []entry
	for i := range 50 {
		k := fmt.Sprint("m", i)
		es = append(es, entry{k, "v" + k, i%10 == 9, time.Minute, s.Generation(k)})
	}
	s.Invalidate("m3") // stale generation: skipped
	es[4].ttl = 0      // no TTL: skipped
	at := func(i int) (string, string, bool, time.Duration, uint64) {
		e := es[i]
		return e.key, e.value, e.absent, e.ttl, e.gen
	}
	if n := m.FillMany(len(es), at); n != len(es)-2 {
		t.Errorf("FillMany stored %d, want %d", n, len(es)-2)
	}
	for i, e := range es {
		v, absent, ok := s.Get(e.key)
		switch {
		case i == 3 || i == 4:
			if ok {
				t.Errorf("%s: stored although its %s", e.key, map[bool]string{true: "generation moved", false: "ttl is 0"}[i == 3])
			}
		case !ok || absent != e.absent || (!absent && v != e.value):
			t.Errorf("Get(%s) = %q, %v, %v; want %q, %v, true", e.key, v, absent, ok, e.value, e.absent)
		}
	}
	// Invalidations racing with a batch fill of the same keys win.
	for round := range 100 {
		keys := []string{fmt.Sprint("r", round, "a"), fmt.Sprint("r", round, "b"), fmt.Sprint("r", round, "c")}
		gens := []uint64{s.Generation(keys[0]), s.Generation(keys[1]), s.Generation(keys[2])}
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; s.Invalidate(keys...) })
		wg.Go(func() {
			<-start
			m.FillMany(3, func(i int) (string, string, bool, time.Duration, uint64) {
				return keys[i], "stale", false, time.Minute, gens[i]
			})
		})
		close(start)
		wg.Wait()
		for _, k := range keys {
			if _, _, ok := s.Get(k); ok {
				t.Fatalf("round %d: %s survived an invalidation that began after its generation snapshot", round, k)
			}
		}
	}
}

func fill(t *testing.T, s Store, key, v string, absent bool, ttl time.Duration) {
	t.Helper()
	if !s.Fill(key, v, absent, ttl, s.Generation(key)) {
		t.Fatalf("Fill(%q) with a fresh generation = false, want true", key)
	}
}

func fillThenGet(t *testing.T, s Store) {
	fill(t, s, "a", "va", false, time.Minute)
	fill(t, s, "b", "", true, time.Minute)
	if v, absent, ok := s.Get("a"); !ok || absent || v != "va" {
		t.Errorf("Get(a) = %q, %v, %v; want va, false, true", v, absent, ok)
	}
	if _, absent, ok := s.Get("b"); !ok || !absent {
		t.Errorf("Get(b) = absent %v, ok %v; want true, true", absent, ok)
	}
	if _, _, ok := s.Get("c"); ok {
		t.Error("Get(c) hit, want miss")
	}
	if s.Fill("z", "v", false, 0, s.Generation("z")) {
		t.Error("Fill with ttl 0 = true, want false")
	}
	if _, _, ok := s.Get("z"); ok {
		t.Error("Fill with ttl 0 stored the entry")
	}
}

func fillReplaces(t *testing.T, s Store) {
	fill(t, s, "k", "one", false, time.Minute)
	fill(t, s, "k", "two", false, time.Minute)
	if v, _, ok := s.Get("k"); !ok || v != "two" {
		t.Errorf("Get after two fills = %q, %v; want two, true", v, ok)
	}
	fill(t, s, "k", "", true, time.Minute)
	if _, absent, ok := s.Get("k"); !ok || !absent {
		t.Errorf("Get after a not-found fill = absent %v, ok %v; want true, true", absent, ok)
	}
}

func generationGuard(t *testing.T, open func(t *testing.T) Store) {
	for _, tt := range []struct {
		name   string
		change func(s Store)
	}{
		{"invalidate same key", func(s Store) { s.Invalidate("k") }},
		{"invalidate among others", func(s Store) { s.Invalidate("x", "k", "y") }},
		{"flush", func(s Store) { s.Flush() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			gen := s.Generation("k")
			tt.change(s) // lands between the snapshot and the fill
			if s.Fill("k", "stale", false, time.Minute, gen) {
				t.Fatal("Fill with a stale generation = true, want false")
			}
			if _, _, ok := s.Get("k"); ok {
				t.Fatal("stale fill landed")
			}
			fill(t, s, "k", "fresh", false, time.Minute)
			if v, _, ok := s.Get("k"); !ok || v != "fresh" {
				t.Fatalf("Get = %q, %v; want fresh, true", v, ok)
			}
		})
	}
}

// racingFill runs a fill with a generation taken before an invalidation
// concurrently with that invalidation, many times: however they interleave,
// the entry must be gone once both returned.
func racingFill(t *testing.T, s Store) {
	for i := range 500 {
		key := fmt.Sprint("k", i%7)
		gen := s.Generation(key)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; s.Invalidate(key) })
		wg.Go(func() { <-start; s.Fill(key, "stale", false, time.Minute, gen) })
		wg.Go(func() { <-start; s.Get(key) })
		close(start)
		wg.Wait()
		if v, _, ok := s.Get(key); ok {
			t.Fatalf("round %d: %q = %q survived an invalidation that began after its generation snapshot", i, key, v)
		}
	}
}

func otherKeys(t *testing.T, s Store) {
	// Generations of unrelated keys must not all move together (that would
	// make every fill fail under load).
	gen := s.Generation("k")
	moved := 0
	for i := range 100 {
		s.Invalidate(fmt.Sprint("other-", i))
		if s.Generation("k") != gen {
			moved++
			gen = s.Generation("k")
		}
	}
	if moved > 10 {
		t.Fatalf("generation of k moved on %d of 100 invalidations of other keys", moved)
	}
}

func evict(t *testing.T, s Store) {
	for _, k := range []string{"a", "b", "c"} {
		fill(t, s, k, "v", false, time.Minute)
	}
	s.Invalidate("a", "b")
	if _, _, ok := s.Get("a"); ok {
		t.Error("a survived Invalidate")
	}
	if _, _, ok := s.Get("b"); ok {
		t.Error("b survived Invalidate")
	}
	if _, _, ok := s.Get("c"); !ok {
		t.Error("c was evicted by Invalidate of a and b")
	}
	s.Flush()
	if _, _, ok := s.Get("c"); ok {
		t.Error("c survived Flush")
	}
	fill(t, s, "c", "again", false, time.Minute)
	if v, _, ok := s.Get("c"); !ok || v != "again" {
		t.Errorf("Get after Flush and a fresh fill = %q, %v; want again, true", v, ok)
	}
}

// perEntryTTL runs in a synctest bubble: time moves only when every
// goroutine of the bubble (the store's included) is blocked.
func perEntryTTL(t *testing.T, newStore func(t *testing.T) Store) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		fill(t, s, "short", "s", false, 50*time.Millisecond)
		fill(t, s, "nf", "", true, 50*time.Millisecond)
		fill(t, s, "long", "l", false, time.Hour)
		time.Sleep(10 * time.Millisecond)
		if _, _, ok := s.Get("short"); !ok {
			t.Fatal("short entry missing before its TTL")
		}
		time.Sleep(2 * time.Second)
		if _, _, ok := s.Get("short"); ok {
			t.Error("entry still there 2 s after its 50 ms TTL")
		}
		if _, _, ok := s.Get("nf"); ok {
			t.Error("not-found entry still there 2 s after its 50 ms TTL")
		}
		if v, _, ok := s.Get("long"); !ok || v != "l" {
			t.Errorf("Get(long) = %q, %v; want l, true (its TTL is an hour)", v, ok)
		}
	})
}

func nilAndClosed(t *testing.T, suite Suite) {
	n := suite.Nil
	if _, _, ok := n.Get("k"); ok {
		t.Error("nil store hit")
	}
	if n.Fill("k", "v", false, time.Minute, n.Generation("k")) {
		t.Error("nil store Fill = true")
	}
	n.Invalidate("k")
	n.Flush()
	n.Close()

	s := suite.New(t)
	fill(t, s, "k", "v", false, time.Minute)
	gen := s.Generation("k")
	s.Close()
	s.Close()
	if _, _, ok := s.Get("k"); ok {
		t.Error("closed store hit")
	}
	if s.Fill("k", "v", false, time.Minute, s.Generation("k")) {
		t.Error("closed store Fill = true")
	}
	if s.Generation("k") == gen {
		t.Error("Close left generations unchanged: a fill racing with Close could land")
	}
	s.Invalidate("k")
	s.Flush()
}

func noAlloc(t *testing.T, s Store) {
	fill(t, s, "k", "v", false, time.Minute)
	fill(t, s, "nf", "", true, time.Minute)
	if n := testing.AllocsPerRun(1000, func() { s.Get("k") }); n != 0 {
		t.Errorf("Get of a value allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { s.Get("nf") }); n != 0 {
		t.Errorf("Get of a not-found allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { s.Get("missing") }); n != 0 {
		t.Errorf("Get of a miss allocates %v times, want 0", n)
	}
}
