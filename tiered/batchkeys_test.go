package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// TestBatchWithBadKey: one invalid key in a batch call is reported in a
// KeyErrors and every other key is handled (issue 20: a Delete of 23 keys
// with one reserved deleted none, and 21 went on being served on every
// node). Checked on two nodes with real buses, for Delete, SetMany,
// GetOrLoadMany and InvalidateTags.
func TestBatchWithBadKey(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			nodes := carryNodes(t, d.client, redistest.Name(t), 2)
			a, b := nodes[0].c, nodes[1].c
			const reserved = "\x00"
			keys := []string{reserved}
			items := map[string]string{reserved: "x"}
			for i := range 22 {
				k := fmt.Sprintf("k%02d", i)
				keys = append(keys, k)
				items[k] = "old"
			}
			checkBad := func(what string, err error, bad string, sentinel error) {
				t.Helper()
				var ke tiered.KeyErrors
				if !errors.As(err, &ke) || len(ke) != 1 || !errors.Is(ke[bad], sentinel) {
					t.Fatalf("%s: error %v, want a KeyErrors with %q alone, matching %v", what, err, bad, sentinel)
				}
			}
			// SetMany writes the 22 valid keys.
			checkBad("SetMany", a.SetMany(ctx, items), reserved, tiered.ErrReservedKey)
			// GetOrLoadMany reads them on b (into its L1).
			got, err := b.GetOrLoadMany(ctx, keys, func(context.Context, []string) (map[string]string, error) {
				return nil, errors.New("no key should be loaded")
			})
			checkBad("GetOrLoadMany", err, reserved, tiered.ErrReservedKey)
			if len(got) != 22 {
				t.Fatalf("GetOrLoadMany returned %d values, want the 22 valid keys", len(got))
			}
			// Delete on a removes the 22 from L2 and from b's L1.
			checkBad("Delete", a.Delete(ctx, keys...), reserved, tiered.ErrReservedKey)
			for _, k := range keys[1:] {
				eventually(t, 5*time.Second, "b to drop "+k, func() bool {
					_, ok, err := b.Get(ctx, k)
					return err == nil && !ok
				})
			}
			// InvalidateTags with one empty tag invalidates the others.
			if err := a.Set(ctx, "tagged", "v", tiered.Tags("t")); err != nil {
				t.Fatal(err)
			}
			checkBad("InvalidateTags", a.InvalidateTags(ctx, "", "t"), "", tiered.ErrInvalidTag)
			eventually(t, 5*time.Second, "the tagged value to be invalidated", func() bool {
				_, ok, err := b.Get(ctx, "tagged")
				return err == nil && !ok
			})
		})
	}
}
