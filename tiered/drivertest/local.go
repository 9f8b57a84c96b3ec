package drivertest

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// LocalSuite describes a driver.Local[V] under test.
type LocalSuite[V any] struct {
	// New returns a fresh, empty store with room for at least 10,000
	// entries. The suite closes it. Close must stop every goroutine the
	// store started: the TTL checks run in a testing/synctest bubble.
	New func(t *testing.T) driver.Local[V]
	// Nil, when not nil, is the implementation's nil pointer as a
	// driver.Local: every method must be safe on it and behave as on an
	// empty store. Leave it nil to skip the check.
	Nil driver.Local[V]
	// KeepStale, when not nil, returns a fresh store that keeps entries
	// for d past their TTL; it must implement driver.StaleLocal. Stores
	// created by New must keep nothing past the TTL.
	KeepStale func(t *testing.T, d time.Duration) driver.Local[V]
	// Value returns the i-th of distinct values the suite stores. It may
	// be nil when V is string (the values are then "v0", "v1", ...).
	Value func(i int) V
	// Equal reports whether two values are equal. Default
	// reflect.DeepEqual.
	Equal func(a, b V) bool
	// Wait, when not nil, blocks until every write handed to s so far is
	// applied (package local's Store.Wait). The check of an invalidation
	// racing with FillWritten, which does not wait, needs it and is
	// skipped without it.
	Wait func(s driver.Local[V])
}

// RunLocal runs the contract checks of a driver.Local[V] as subtests of t,
// each named after the rule it checks, and those of the optional
// interfaces the store implements (driver.BatchFiller,
// driver.WrittenFiller, driver.StaleLocal with suite.KeepStale).
func RunLocal[V any](t *testing.T, suite LocalSuite[V]) {
	t.Helper()
	if suite.New == nil {
		t.Fatal("drivertest: LocalSuite.New is nil")
	}
	l := &localRun[V]{s: suite}
	if l.s.Value == nil {
		if _, ok := any("").(V); !ok {
			t.Fatalf("drivertest: LocalSuite.Value is nil and V is %T, not string", *new(V))
		}
		l.s.Value = func(i int) V { return any(fmt.Sprint("v", i)).(V) }
	}
	if l.s.Equal == nil {
		l.s.Equal = func(a, b V) bool { return reflect.DeepEqual(a, b) }
	}
	open := func(t *testing.T) driver.Local[V] {
		t.Helper()
		st := suite.New(t)
		t.Cleanup(st.Close)
		return st
	}
	t.Run("FillThenGetReturnsTheEntry", func(t *testing.T) { l.fillThenGet(t, open(t)) })
	t.Run("FillReplacesTheEntry", func(t *testing.T) { l.fillReplaces(t, open(t)) })
	t.Run("FillWithStaleGenerationIsRefused", func(t *testing.T) { l.generationGuard(t, open) })
	t.Run("InvalidationRacingFillWins", func(t *testing.T) { l.racingFill(t, open(t)) })
	t.Run("InvalidateAddsOneToTheGeneration", func(t *testing.T) { l.invalidateAddsOne(t, open(t)) })
	t.Run("InvalidateOtherKeyKeepsGeneration", func(t *testing.T) { l.otherKeys(t, open(t)) })
	t.Run("InvalidateAndFlushEvict", func(t *testing.T) { l.evict(t, open(t)) })
	t.Run("EntryExpiresAfterItsTTL", func(t *testing.T) { l.perEntryTTL(t, suite.New) })
	t.Run("NilAndClosedStoreBehaveAsEmpty", func(t *testing.T) { l.nilAndClosed(t) })
	t.Run("GetDoesNotAllocate", func(t *testing.T) { l.noAlloc(t, open(t)) })
	t.Run("BatchFiller/FillManyStoresAsFillWould", func(t *testing.T) { l.fillMany(t, open(t)) })
	t.Run("WrittenFiller/FillWrittenKeepsTheGenerationGuard", func(t *testing.T) { l.fillWritten(t, open(t)) })
	if suite.KeepStale != nil {
		t.Run("StaleLocal/GetStaleReturnsExpiredEntries", func(t *testing.T) { l.keepStale(t) })
	}
}

type localRun[V any] struct{ s LocalSuite[V] }

func (l *localRun[V]) val(i int) V { return l.s.Value(i) }

// keepStale checks the keep-stale window: past its TTL an entry is gone for
// Get but GetStale returns it with the end of its TTL, for entries written
// by Fill and by FillMany; a store without the window returns nothing.
func (l *localRun[V]) keepStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := l.s.KeepStale(t, time.Hour)
		defer s.Close()
		stale, ok := s.(driver.StaleLocal[V])
		if !ok {
			t.Fatalf("%T does not implement driver.StaleLocal", s)
		}
		start := time.Now()
		l.fill(t, s, "one", l.val(1), false, 50*time.Millisecond)
		want := map[string]V{"one": l.val(1)}
		if mf, ok := s.(driver.BatchFiller[V]); ok {
			gen := s.Generation("many")
			if n := mf.FillMany(1, func(int) (string, V, bool, time.Duration, uint64) {
				return "many", l.val(2), false, 50 * time.Millisecond, gen
			}); n != 1 {
				t.Fatalf("FillMany stored %d entries, want 1", n)
			}
			want["many"] = l.val(2)
		}
		time.Sleep(time.Second) // synctest: the fake clock moves a second
		for k, w := range want {
			if _, _, ok := s.Get(k); ok {
				t.Errorf("Get(%s) returned an entry 1 s after its 50 ms TTL", k)
			}
			v, absent, expiredAt, ok := stale.GetStale(k)
			if !ok || absent || !l.s.Equal(v, w) || !expiredAt.Equal(start.Add(50*time.Millisecond)) {
				t.Errorf("GetStale(%s) = %v, %v, %v, %v; want %v ending at %v", k, v, absent, expiredAt, ok, w, start.Add(50*time.Millisecond))
			}
		}
		s.Invalidate("one")
		if _, _, _, ok := stale.GetStale("one"); ok {
			t.Error("GetStale returned an invalidated entry")
		}
		plain := l.s.New(t)
		defer plain.Close()
		l.fill(t, plain, "k", l.val(3), false, time.Hour)
		if ps, ok := plain.(driver.StaleLocal[V]); ok {
			if _, _, _, ok := ps.GetStale("k"); ok {
				t.Error("a store without the keep-stale window returned an entry from GetStale")
			}
		}
	})
}

// fillMany checks FillMany, when the store has it: every entry as Fill
// would store it, the stale ones (generation moved, ttl 0) skipped, and an
// invalidation racing with the batch wins.
func (l *localRun[V]) fillMany(t *testing.T, s driver.Local[V]) {
	m, ok := s.(driver.BatchFiller[V])
	if !ok {
		t.Skipf("%T does not implement driver.BatchFiller", s)
	}
	type entry struct {
		key    string
		value  V
		absent bool
		ttl    time.Duration
		gen    uint64
	}
	var es []entry
	for i := range 50 {
		k := fmt.Sprint("m", i)
		e := entry{k, l.val(i), i%10 == 9, time.Minute, s.Generation(k)}
		if e.absent {
			e.value = *new(V)
		}
		es = append(es, e)
	}
	s.Invalidate("m3") // stale generation: skipped
	es[4].ttl = 0      // no TTL: skipped
	at := func(i int) (string, V, bool, time.Duration, uint64) {
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
		case !ok || absent != e.absent || (!absent && !l.s.Equal(v, e.value)):
			t.Errorf("Get(%s) = %v, %v, %v; want %v, %v, true", e.key, v, absent, ok, e.value, e.absent)
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
			m.FillMany(3, func(i int) (string, V, bool, time.Duration, uint64) {
				return keys[i], l.val(i), false, time.Minute, gens[i]
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

// fillWritten checks FillWritten, when the store has it: with a fresh
// generation it reports true and a Get soon sees the entry; with a stale
// one it reports false and stores nothing; an invalidation racing with it
// wins.
func (l *localRun[V]) fillWritten(t *testing.T, s driver.Local[V]) {
	w, ok := s.(driver.WrittenFiller[V])
	if !ok {
		t.Skipf("%T does not implement driver.WrittenFiller", s)
	}
	if !w.FillWritten("w", l.val(1), false, time.Minute, s.Generation("w")) {
		t.Fatal("FillWritten with a fresh generation = false, want true")
	}
	eventually(t, "Get to see the entry FillWritten stored", func() bool {
		v, absent, ok := s.Get("w")
		return ok && !absent && l.s.Equal(v, l.val(1))
	})
	gen := s.Generation("x")
	s.Invalidate("x")
	if w.FillWritten("x", l.val(2), false, time.Minute, gen) {
		t.Error("FillWritten with a stale generation = true, want false")
	}
	if l.s.Wait == nil {
		return // the racing check below needs LocalSuite.Wait
	}
	for i := range 200 {
		key := fmt.Sprint("wr", i%7)
		gen := s.Generation(key)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; s.Invalidate(key) })
		wg.Go(func() { <-start; w.FillWritten(key, l.val(3), false, time.Minute, gen) })
		close(start)
		wg.Wait()
		l.s.Wait(s)
		if _, _, ok := s.Get(key); ok {
			t.Fatalf("round %d: %q survived an invalidation that began after its generation snapshot", i, key)
		}
	}
}

func (l *localRun[V]) fill(t *testing.T, s driver.Local[V], key string, v V, absent bool, ttl time.Duration) {
	t.Helper()
	if !s.Fill(key, v, absent, ttl, s.Generation(key)) {
		t.Fatalf("Fill(%q) with a fresh generation = false, want true", key)
	}
}

func (l *localRun[V]) fillThenGet(t *testing.T, s driver.Local[V]) {
	var zero V
	l.fill(t, s, "a", l.val(1), false, time.Minute)
	l.fill(t, s, "b", zero, true, time.Minute)
	if v, absent, ok := s.Get("a"); !ok || absent || !l.s.Equal(v, l.val(1)) {
		t.Errorf("Get(a) = %v, %v, %v; want %v, false, true", v, absent, ok, l.val(1))
	}
	if _, absent, ok := s.Get("b"); !ok || !absent {
		t.Errorf("Get(b) = absent %v, ok %v; want true, true", absent, ok)
	}
	if _, _, ok := s.Get("c"); ok {
		t.Error("Get(c) hit, want miss")
	}
	if s.Fill("z", l.val(2), false, 0, s.Generation("z")) {
		t.Error("Fill with ttl 0 = true, want false")
	}
	if _, _, ok := s.Get("z"); ok {
		t.Error("Fill with ttl 0 stored the entry")
	}
}

func (l *localRun[V]) fillReplaces(t *testing.T, s driver.Local[V]) {
	l.fill(t, s, "k", l.val(1), false, time.Minute)
	l.fill(t, s, "k", l.val(2), false, time.Minute)
	if v, _, ok := s.Get("k"); !ok || !l.s.Equal(v, l.val(2)) {
		t.Errorf("Get after two fills = %v, %v; want %v, true", v, ok, l.val(2))
	}
	l.fill(t, s, "k", *new(V), true, time.Minute)
	if _, absent, ok := s.Get("k"); !ok || !absent {
		t.Errorf("Get after a not-found fill = absent %v, ok %v; want true, true", absent, ok)
	}
}

func (l *localRun[V]) generationGuard(t *testing.T, open func(t *testing.T) driver.Local[V]) {
	for _, tt := range []struct {
		name   string
		change func(s driver.Local[V])
	}{
		{"invalidate same key", func(s driver.Local[V]) { s.Invalidate("k") }},
		{"invalidate among others", func(s driver.Local[V]) { s.Invalidate("x", "k", "y") }},
		{"flush", func(s driver.Local[V]) { s.Flush() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			gen := s.Generation("k")
			tt.change(s) // lands between the snapshot and the fill
			if s.Fill("k", l.val(1), false, time.Minute, gen) {
				t.Fatal("Fill with a stale generation = true, want false")
			}
			if _, _, ok := s.Get("k"); ok {
				t.Fatal("stale fill landed")
			}
			l.fill(t, s, "k", l.val(2), false, time.Minute)
			if v, _, ok := s.Get("k"); !ok || !l.s.Equal(v, l.val(2)) {
				t.Fatalf("Get = %v, %v; want %v, true", v, ok, l.val(2))
			}
		})
	}
}

// racingFill runs a fill with a generation taken before an invalidation
// concurrently with that invalidation, many times: however they interleave,
// the entry must be gone once both returned.
func (l *localRun[V]) racingFill(t *testing.T, s driver.Local[V]) {
	for i := range 500 {
		key := fmt.Sprint("k", i%7)
		gen := s.Generation(key)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; s.Invalidate(key) })
		wg.Go(func() { <-start; s.Fill(key, l.val(i), false, time.Minute, gen) })
		wg.Go(func() { <-start; s.Get(key) })
		close(start)
		wg.Wait()
		if v, _, ok := s.Get(key); ok {
			t.Fatalf("round %d: %q = %v survived an invalidation that began after its generation snapshot", i, key, v)
		}
	}
}

// invalidateAddsOne checks the rule a Set's own L1 fill relies on: with
// nothing else changing it, Invalidate of one key adds exactly one to its
// generation.
func (l *localRun[V]) invalidateAddsOne(t *testing.T, s driver.Local[V]) {
	for i := range 10 {
		before := s.Generation("k")
		s.Invalidate("k")
		if got := s.Generation("k"); got != before+1 {
			t.Fatalf("round %d: generation %d after Invalidate of a generation-%d key, want %d", i, got, before, before+1)
		}
	}
}

func (l *localRun[V]) otherKeys(t *testing.T, s driver.Local[V]) {
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

func (l *localRun[V]) evict(t *testing.T, s driver.Local[V]) {
	for _, k := range []string{"a", "b", "c"} {
		l.fill(t, s, k, l.val(1), false, time.Minute)
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
	l.fill(t, s, "c", l.val(2), false, time.Minute)
	if v, _, ok := s.Get("c"); !ok || !l.s.Equal(v, l.val(2)) {
		t.Errorf("Get after Flush and a fresh fill = %v, %v; want %v, true", v, ok, l.val(2))
	}
}

// perEntryTTL runs in a synctest bubble: time moves only when every
// goroutine of the bubble (the store's included) is blocked.
func (l *localRun[V]) perEntryTTL(t *testing.T, newStore func(t *testing.T) driver.Local[V]) {
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t)
		defer s.Close()
		l.fill(t, s, "short", l.val(1), false, 50*time.Millisecond)
		l.fill(t, s, "nf", *new(V), true, 50*time.Millisecond)
		l.fill(t, s, "long", l.val(2), false, time.Hour)
		time.Sleep(10 * time.Millisecond) // synctest: the fake clock moves
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
		if v, _, ok := s.Get("long"); !ok || !l.s.Equal(v, l.val(2)) {
			t.Errorf("Get(long) = %v, %v; want %v, true (its TTL is an hour)", v, ok, l.val(2))
		}
	})
}

func (l *localRun[V]) nilAndClosed(t *testing.T) {
	if n := l.s.Nil; n != nil {
		if _, _, ok := n.Get("k"); ok {
			t.Error("nil store hit")
		}
		if n.Fill("k", l.val(1), false, time.Minute, n.Generation("k")) {
			t.Error("nil store Fill = true")
		}
		n.Invalidate("k")
		n.Flush()
		n.Close()
	}

	s := l.s.New(t)
	l.fill(t, s, "k", l.val(1), false, time.Minute)
	gen := s.Generation("k")
	s.Close()
	s.Close()
	if _, _, ok := s.Get("k"); ok {
		t.Error("closed store hit")
	}
	if s.Fill("k", l.val(1), false, time.Minute, s.Generation("k")) {
		t.Error("closed store Fill = true")
	}
	if s.Generation("k") == gen {
		t.Error("Close left generations unchanged: a fill racing with Close could land")
	}
	s.Invalidate("k")
	s.Flush()
}

func (l *localRun[V]) noAlloc(t *testing.T, s driver.Local[V]) {
	l.fill(t, s, "k", l.val(1), false, time.Minute)
	l.fill(t, s, "nf", *new(V), true, time.Minute)
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
