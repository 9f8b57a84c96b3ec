package l1core

import (
	"strings"
	"testing"
	"time"
)

// mapTable is a Table over a plain map, for the guard's own tests.
type mapTable map[string]string

func (m mapTable) Delete(key string) { delete(m, key) }
func (m mapTable) Clear()            { clear(m) }

func TestFillLosesToInvalidateDuringSettle(t *testing.T) {
	var g Guard
	g.Init()
	m := mapTable{}
	gen := g.Generation("k")
	// The invalidation runs after the store and before the re-check: the
	// window ristretto's buffered write opens. It must win.
	settled := false
	ok := g.Fill(m, "k", gen, func(uint64) bool { m["k"] = "v"; return true }, func() {
		settled = true
		g.stripe("k").Add(1) // what Invalidate does first; its Delete comes after
	})
	if ok || !settled {
		t.Fatalf("Fill = %v (settled %v), want false after a racing invalidation", ok, settled)
	}
	if _, found := m["k"]; found {
		t.Fatal("the entry stored before the invalidation was not removed")
	}
	if g.Generation("k") != gen+1 {
		t.Fatalf("generation %d, want %d", g.Generation("k"), gen+1)
	}
}

func TestFillChecksGenerationFirst(t *testing.T) {
	var g Guard
	g.Init()
	m := mapTable{}
	gen := g.Generation("k")
	g.Invalidate(m, "k")
	if g.Fill(m, "k", gen, func(uint64) bool { t.Fatal("store called with a stale generation"); return true }, nil) {
		t.Fatal("Fill with a stale generation succeeded")
	}
	g.Flush(m)
	if got := g.Generation("k"); got != gen+2 {
		t.Fatalf("generation after Invalidate and Flush = %d, want %d", got, gen+2)
	}
}

func TestCloseOnceAndRefusesWrites(t *testing.T) {
	var g Guard
	g.Init()
	m := mapTable{"a": "1"}
	stops := 0
	if !g.Close(func() { stops++ }) || g.Close(func() { stops++ }) || stops != 1 {
		t.Fatalf("Close ran stop %d times, want exactly once", stops)
	}
	if !g.Closed() || g.Lock() {
		t.Fatal("a closed guard still takes writes")
	}
	g.Invalidate(m, "a")
	g.Flush(m)
	if m["a"] != "1" {
		t.Fatal("a closed guard changed the map")
	}
}

func TestBuild(t *testing.T) {
	cost := func(s string) int64 { return int64(len(s)) }
	bad := map[string][]Option{
		"zero entries":  {MaxEntries(0)},
		"negative cost": {MaxCost(-1), Cost(cost)},
		"both bounds":   {MaxEntries(1), MaxCost(1), Cost(cost)},
		"cost, no func": {MaxCost(1)},
		"func, no cost": {Cost(cost)},
		"nil func":      {MaxCost(1), Cost[string](nil)},
		"other type":    {MaxCost(1), Cost(func(int) int64 { return 1 })},
		"nil option":    {nil},
		"negative keep": {KeepStale(-time.Second)},
	}
	for name, opts := range bad {
		if _, _, err := Build[string](opts); err == nil {
			t.Errorf("%s: Build accepted it", name)
		}
	}
	cfg, _, err := Build[string]([]Option(nil))
	if err != nil || cfg.MaxEntries != DefaultMaxEntries {
		t.Fatalf("Build() = %+v, %v; want the default bound", cfg, err)
	}
	cfg, fn, err := Build[string]([]Option{MaxCost(10), Cost(cost), KeepStale(time.Minute)})
	if err != nil || fn == nil || fn("abc") != 3 || cfg.MaxEntries != 0 || cfg.StaleFor != time.Minute {
		t.Fatalf("Build(cost) = %+v, %v", cfg, err)
	}
	now := time.Unix(100, 0)
	if ttl, exp := cfg.Expiry(now, time.Second); ttl != time.Minute+time.Second || exp != now.Add(time.Second).UnixNano() {
		t.Fatalf("Expiry = %v, %d", ttl, exp)
	}
	_, _, err = Build[string]([]Option{MaxCost(1), Cost(func(int) int64 { return 1 })})
	if err == nil || !strings.Contains(err.Error(), "int") {
		t.Fatalf("cost of another type: %v", err)
	}
}
