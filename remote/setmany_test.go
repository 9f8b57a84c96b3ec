package remote_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// tiered uses SetMany when the store has it (an optional interface).
var _ interface {
	SetMany(ctx context.Context, keys []string, entries []driver.Entry) []error
} = (*remote.Store)(nil)

func TestSetMany(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s, err := remote.New(rdb, remote.WithMaxValueBytes(100))
		if err != nil {
			t.Fatal(err)
		}
		exp := time.Now().Add(time.Minute)
		p := redistest.Name(t) + ":"
		keys := []string{p + "a", p + "b", p + "big", p + "c", ""}
		entries := []driver.Entry{
			{Kind: driver.KindValue, Payload: []byte("A"), ExpiresAt: exp, Version: 1},
			{Kind: driver.KindValue, Payload: []byte("B"), ExpiresAt: exp, Version: 2},
			{Kind: driver.KindValue, Payload: []byte(strings.Repeat("x", 200)), ExpiresAt: exp},
			{Kind: driver.KindNotFound, ExpiresAt: exp, Version: 3},
			{Kind: driver.KindValue},
		}
		// A lease under a key is replaced, as Set does.
		if _, won, err := s.Acquire(ctx, keys[0], 99, exp); err != nil || !won {
			t.Fatalf("Acquire = %v, %v", won, err)
		}
		errs := s.SetMany(ctx, keys, entries)
		if len(errs) != len(keys) {
			t.Fatalf("%d errors for %d keys", len(errs), len(keys))
		}
		for i, want := range []error{nil, nil, remote.ErrValueTooLarge, nil, remote.ErrEmptyKey} {
			if (want == nil) != (errs[i] == nil) || want != nil && !errors.Is(errs[i], want) {
				t.Fatalf("key %q: error %v, want %v", keys[i], errs[i], want)
			}
		}
		got, err := s.GetMany(ctx, keys[:4])
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range got {
			if i == 2 {
				if e.Kind != driver.KindNone {
					t.Fatalf("refused key stored: kind %d", e.Kind)
				}
				continue
			}
			if e.Kind != entries[i].Kind || string(e.Payload) != string(entries[i].Payload) || e.Version != entries[i].Version {
				t.Fatalf("key %q holds %+v, want %+v", keys[i], e, entries[i])
			}
		}
		if errs := s.SetMany(ctx, keys[:2], entries[:1]); errs[0] == nil || errs[1] == nil {
			t.Fatalf("mismatched lengths: %v", errs)
		}
	})
}
