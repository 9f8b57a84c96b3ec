package local_test

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/local"
)

var _ driver.Local[string] = (*local.Store[string])(nil)

func newStore[V any](t *testing.T, opts ...local.Option) *local.Store[V] {
	t.Helper()
	s, err := local.New[V](opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestFillThenGet(t *testing.T) {
	s := newStore[string](t)
	if !s.Fill("a", "va", false, time.Minute, s.Generation("a")) {
		t.Fatal("Fill(a) = false, want true")
	}
	if !s.Fill("b", "", true, time.Minute, s.Generation("b")) {
		t.Fatal("Fill(b) = false, want true")
	}
	s.Wait()
	if v, absent, ok := s.Get("a"); !ok || absent || v != "va" {
		t.Errorf("Get(a) = %q, %v, %v; want va, false, true", v, absent, ok)
	}
	if _, absent, ok := s.Get("b"); !ok || !absent {
		t.Errorf("Get(b) = absent %v, ok %v; want true, true", absent, ok)
	}
	if _, _, ok := s.Get("c"); ok {
		t.Error("Get(c) hit, want miss")
	}
}

func TestGenerationGuard(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *local.Store[int])
	}{
		{"invalidate same key", func(s *local.Store[int]) { s.Invalidate("k") }},
		{"flush", func(s *local.Store[int]) { s.Flush() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore[int](t)
			gen := s.Generation("k")
			tt.change(s) // lands between the snapshot and the fill
			if s.Fill("k", 1, false, time.Minute, gen) {
				t.Fatal("Fill with a stale generation = true, want false")
			}
			s.Wait()
			if _, _, ok := s.Get("k"); ok {
				t.Fatal("stale fill landed")
			}
			if !s.Fill("k", 2, false, time.Minute, s.Generation("k")) {
				t.Fatal("Fill with a fresh generation = false")
			}
			s.Wait()
			if v, _, ok := s.Get("k"); !ok || v != 2 {
				t.Fatalf("Get = %d, %v; want 2, true", v, ok)
			}
		})
	}
}

func TestInvalidateOtherKeyKeepsGeneration(t *testing.T) {
	s := newStore[int](t)
	// Find a key on another stripe: generations of unrelated keys must not
	// all move together (that would make every fill fail under load).
	gen := s.Generation("k")
	moved := 0
	for i := range 100 {
		s.Invalidate(string(rune('a'+i%26)) + string(rune('a'+i/26)))
		if s.Generation("k") != gen {
			moved++
			gen = s.Generation("k")
		}
	}
	if moved > 10 {
		t.Fatalf("generation of k moved on %d of 100 invalidations of other keys", moved)
	}
}

func TestInvalidateAndFlushEvict(t *testing.T) {
	s := newStore[int](t)
	for _, k := range []string{"a", "b", "c"} {
		s.Fill(k, 1, false, time.Minute, s.Generation(k))
	}
	s.Wait()
	s.Invalidate("a", "b")
	if _, _, ok := s.Get("a"); ok {
		t.Error("a survived Invalidate")
	}
	if _, _, ok := s.Get("c"); !ok {
		t.Error("c was evicted by Invalidate of a and b")
	}
	s.Flush()
	if _, _, ok := s.Get("c"); ok {
		t.Error("c survived Flush")
	}
}

func TestTTL(t *testing.T) {
	s := newStore[int](t)
	const ttl = 200 * time.Millisecond
	start := time.Now()
	s.Fill("k", 1, false, ttl, s.Generation("k"))
	s.Wait()
	// On a busy machine the TTL may pass before Get runs; only a miss seen
	// well before the TTL is a failure.
	if _, _, ok := s.Get("k"); !ok && time.Since(start) < ttl/2 {
		t.Fatal("entry missing before its TTL")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, ok := s.Get("k"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry still there 5 s after a 20 ms TTL")
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
	if s.Fill("z", 1, false, 0, s.Generation("z")) {
		t.Error("Fill with ttl 0 = true, want false")
	}
}

func TestNilAndClosedSafe(t *testing.T) {
	var nilStore *local.Store[int]
	if _, _, ok := nilStore.Get("k"); ok {
		t.Error("nil store hit")
	}
	if nilStore.Fill("k", 1, false, time.Minute, 0) {
		t.Error("nil store Fill = true")
	}
	nilStore.Invalidate("k")
	nilStore.Flush()
	nilStore.Close()

	s, err := local.New[int]()
	if err != nil {
		t.Fatal(err)
	}
	s.Fill("k", 1, false, time.Minute, s.Generation("k"))
	s.Wait()
	s.Close()
	s.Close()
	if _, _, ok := s.Get("k"); ok {
		t.Error("closed store hit")
	}
	if s.Fill("k", 1, false, time.Minute, s.Generation("k")) {
		t.Error("closed store Fill = true")
	}
	s.Invalidate("k")
	s.Flush()
	if got := s.Stats(); got != (local.Stats{}) {
		t.Errorf("closed Stats = %+v, want zero", got)
	}
}

func TestOptions(t *testing.T) {
	cost := func(s string) int64 { return int64(len(s)) }
	bad := []struct {
		name string
		opts []local.Option
	}{
		{"zero entries", []local.Option{local.WithMaxEntries(0)}},
		{"negative entries", []local.Option{local.WithMaxEntries(-1)}},
		{"negative cost", []local.Option{local.WithMaxCost(-1), local.WithCost(cost)}},
		{"both bounds", []local.Option{local.WithMaxEntries(10), local.WithMaxCost(10), local.WithCost(cost)}},
		{"cost without func", []local.Option{local.WithMaxCost(100)}},
		{"func without cost", []local.Option{local.WithCost(cost)}},
		{"nil cost func", []local.Option{local.WithMaxCost(100), local.WithCost[string](nil)}},
		{"cost func of another type", []local.Option{local.WithMaxCost(100), local.WithCost(func(int) int64 { return 1 })}},
		{"zero buffer", []local.Option{local.WithBufferItems(0)}},
		{"zero expected entries", []local.Option{local.WithMaxCost(100), local.WithCost(cost), local.WithExpectedEntries(0)}},
		{"expected entries without a cost bound", []local.Option{local.WithMaxEntries(100), local.WithExpectedEntries(10)}},
		{"nil option", []local.Option{nil}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := local.New[string](tt.opts...); !errors.Is(err, local.ErrInvalidOption) {
				t.Fatalf("New = %v, want ErrInvalidOption", err)
			}
		})
	}
	good := [][]local.Option{
		nil,
		{local.WithMaxEntries(10)},
		{local.WithMaxCost(100), local.WithCost(cost)},
		{local.WithBufferItems(16)},
		{local.WithMaxCost(100), local.WithCost(cost), local.WithExpectedEntries(1000)},
	}
	for i, opts := range good {
		s, err := local.New[string](opts...)
		if err != nil {
			t.Fatalf("good options %d: New = %v", i, err)
		}
		s.Close()
	}
}

// TestMaxEntriesBound checks that WithMaxEntries bounds the store.
func TestMaxEntriesBound(t *testing.T) {
	s := newStore[int](t, local.WithMaxEntries(10))
	for i := range 100 {
		k := string(rune('a' + i))
		s.Fill(k, i, false, time.Minute, s.Generation(k))
	}
	s.Wait()
	if st := s.Stats(); st.Entries > 10 {
		t.Fatalf("entries held %d exceed WithMaxEntries(10)", st.Entries)
	}
}

func TestCostBound(t *testing.T) {
	s := newStore[string](t, local.WithMaxCost(1000), local.WithCost(func(v string) int64 { return int64(len(v)) }))
	big := string(make([]byte, 2000))
	s.Fill("big", big, false, time.Minute, s.Generation("big"))
	s.Wait()
	if _, _, ok := s.Get("big"); ok {
		t.Fatal("a value costing twice MaxCost was stored")
	}
	for i := range 50 {
		k := string(rune('a' + i))
		s.Fill(k, string(make([]byte, 100)), false, time.Minute, s.Generation(k))
	}
	s.Wait()
	if st := s.Stats(); st.Cost > 1000 {
		t.Fatalf("cost held %d exceeds MaxCost 1000", st.Cost)
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	s := newStore[string](t)
	s.Fill("k", "v", false, time.Minute, s.Generation("k"))
	s.Wait()
	if n := testing.AllocsPerRun(1000, func() { s.Get("k") }); n != 0 {
		t.Fatalf("Get allocates %v times, want 0", n)
	}
}

func TestKeepStaleRejectsNegative(t *testing.T) {
	if _, err := local.New[string](local.WithKeepStale(-1)); !errors.Is(err, local.ErrInvalidOption) {
		t.Fatalf("local.WithKeepStale(-1) = %v", err)
	}
}

// TestCostBoundDoesNotPreallocateByCost checks that a store bounded by
// bytes sizes its admission counters by the entries it expects, not by the
// bound: a 1 GiB bound used to allocate 768 MiB of counters up front
// (64 MiB: 48 MiB), assuming 64-byte entries.
func TestCostBoundDoesNotPreallocateByCost(t *testing.T) {
	heapGrowth := func(opts ...local.Option) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s, err := local.New[[]byte](opts...)
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		s.Close()
		return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
	}
	size := local.WithCost(func(b []byte) int64 { return int64(len(b)) })
	def := heapGrowth()
	big := heapGrowth(local.WithMaxCost(1<<30), size)
	// The default store (100,000 entries) and the 1 GiB byte bound expect
	// as many entries; other tests' garbage may add a few MiB.
	if big > 16 || big > def+8 {
		t.Errorf("New(WithMaxCost(1 GiB)) grew the heap by %.1f MiB (default store: %.1f MiB); want the counters sized by the expected entries", big, def)
	}
	more := heapGrowth(local.WithMaxCost(1<<30), size, local.WithExpectedEntries(1_000_000))
	if more < big+16 {
		t.Errorf("WithExpectedEntries(1e6) grew the heap by %.1f MiB, want clearly more than the default's %.1f MiB", more, big)
	}
	t.Logf("heap growth: default %.1f MiB, 1 GiB cost bound %.1f MiB, with 1e6 expected entries %.1f MiB", def, big, more)
}
