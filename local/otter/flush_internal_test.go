package otter

import (
	"testing"
	"time"
)

// TestFlushHidesEntriesBeforeClear: as in package local, an entry from
// before a Flush is a miss as soon as the epoch moved.
func TestFlushHidesEntriesBeforeClear(t *testing.T) {
	s, err := New[string](WithKeepStale(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Fill("k", "v", false, time.Hour, s.Generation("k")) {
		t.Fatal("Fill refused")
	}
	s.guard.Advance()
	if _, ok := s.cache.GetIfPresent("k"); !ok {
		t.Fatal("test setup: otter no longer holds the entry")
	}
	if v, _, ok := s.Get("k"); ok {
		t.Fatalf("Get = %q after the epoch moved, want a miss", v)
	}
	if v, _, _, ok := s.GetStale("k"); ok {
		t.Fatalf("GetStale = %q after the epoch moved, want nothing", v)
	}
}
