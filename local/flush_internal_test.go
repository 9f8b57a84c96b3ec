package local

import (
	"testing"
	"time"
)

// TestFlushHidesEntriesBeforeClear checks that an entry from before a
// Flush is a miss as soon as the Flush changed the epoch, before ristretto
// cleared it (its Clear took up to 1.7 s under -race on a busy machine),
// for Get and GetStale alike.
func TestFlushHidesEntriesBeforeClear(t *testing.T) {
	s, err := New[string](WithKeepStale(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Fill("k", "v", false, time.Hour, s.Generation("k")) {
		t.Fatal("Fill refused")
	}
	if _, _, ok := s.Get("k"); !ok {
		t.Fatal("Get missed a fresh entry")
	}
	s.guard.Advance() // a Flush whose Clear has not run yet
	if _, ok := s.cache.Get("k"); !ok {
		t.Fatal("test setup: ristretto no longer holds the entry")
	}
	if v, _, ok := s.Get("k"); ok {
		t.Fatalf("Get = %q after the epoch moved, want a miss", v)
	}
	if v, _, _, ok := s.GetStale("k"); ok {
		t.Fatalf("GetStale = %q after the epoch moved, want nothing", v)
	}
	if !s.Fill("k", "v2", false, time.Hour, s.Generation("k")) {
		t.Fatal("Fill after the flush refused")
	}
	if v, _, ok := s.Get("k"); !ok || v != "v2" {
		t.Fatalf("Get = %q, %v after a new fill, want v2", v, ok)
	}
}
