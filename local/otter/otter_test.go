package otter_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/local/otter"
	"github.com/tiercache/tiercache/tiered/drivertest"
)

var _ driver.Local[string] = (*otter.Store[string])(nil)

func TestContract(t *testing.T) {
	drivertest.RunLocal(t, drivertest.LocalSuite[string]{
		New: func(t *testing.T) driver.Local[string] {
			s, err := otter.New[string]()
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Nil: (*otter.Store[string])(nil),
		KeepStale: func(t *testing.T, d time.Duration) driver.Local[string] {
			s, err := otter.New[string](otter.WithKeepStale(d))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}

func TestOptions(t *testing.T) {
	cost := func(s string) int64 { return int64(len(s)) }
	bad := []struct {
		name string
		opts []otter.Option
	}{
		{"zero entries", []otter.Option{otter.WithMaxEntries(0)}},
		{"negative entries", []otter.Option{otter.WithMaxEntries(-1)}},
		{"negative cost", []otter.Option{otter.WithMaxCost(-1), otter.WithCost(cost)}},
		{"both bounds", []otter.Option{otter.WithMaxEntries(10), otter.WithMaxCost(10), otter.WithCost(cost)}},
		{"cost without func", []otter.Option{otter.WithMaxCost(100)}},
		{"func without cost", []otter.Option{otter.WithCost(cost)}},
		{"nil func", []otter.Option{otter.WithMaxCost(100), otter.WithCost[string](nil)}},
		{"func of another type", []otter.Option{otter.WithMaxCost(100), otter.WithCost(func(int) int64 { return 1 })}},
		{"nil option", []otter.Option{nil}},
		{"negative keep-stale", []otter.Option{otter.WithKeepStale(-1)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := otter.New[string](tt.opts...); !errors.Is(err, otter.ErrInvalidOption) {
				t.Fatalf("New = %v, want ErrInvalidOption", err)
			}
		})
	}
	s, err := otter.New[string](otter.WithMaxCost(100), otter.WithCost(cost))
	if err != nil {
		t.Fatalf("New with a cost bound: %v", err)
	}
	s.Close()
}

// TestBounds checks that both bounds hold once otter's maintenance has run
// (it runs on writes; Stats reads its estimate).
func TestBounds(t *testing.T) {
	t.Run("entries", func(t *testing.T) {
		s, err := otter.New[string](otter.WithMaxEntries(100))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := range 1000 {
			k := fmt.Sprint(i)
			s.Fill(k, "v", false, time.Minute, s.Generation(k))
		}
		waitFor(t, func() bool { return s.Stats().Entries <= 100 })
		if st := s.Stats(); st.Evicted < 900 {
			t.Errorf("Evicted = %d after 1000 fills of a 100-entry store, want >= 900", st.Evicted)
		}
	})
	t.Run("cost", func(t *testing.T) {
		s, err := otter.New[string](otter.WithMaxCost(1000), otter.WithCost(func(v string) int64 { return int64(len(v)) }))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := range 50 {
			k := fmt.Sprint(i)
			s.Fill(k, string(make([]byte, 100)), false, time.Minute, s.Generation(k))
		}
		waitFor(t, func() bool { return s.Stats().Cost <= 1000 })
	})
}

// waitFor polls cond (otter's maintenance runs on its own goroutines) for
// up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5 s")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}
