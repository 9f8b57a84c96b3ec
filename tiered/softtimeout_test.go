package tiered_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// TestSoftLoadTimeout: a key whose value expired in both tiers is loaded
// again by a slow loader. With WithSoftLoadTimeout the caller gets the
// expired L1 value once the soft timeout passes, counted; the load goes on
// and fills both tiers, and the next caller gets the new value without a
// second loader call. Without it, the caller waits for the load.
func TestSoftLoadTimeout(t *testing.T) {
	for _, soft := range []bool{true, false} {
		t.Run(map[bool]string{true: "soft", false: "hard-only"}[soft], func(t *testing.T) {
			rdb := redistest.Standalone(t)
			l2, err := remote.New(rdb)
			if err != nil {
				t.Fatal(err)
			}
			l1, err := local.New[string](local.WithKeepStale(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			opts := []tiered.Option{tiered.WithLocalTTL(time.Minute)}
			if soft {
				opts = append(opts, tiered.WithSoftLoadTimeout(50*time.Millisecond, time.Minute))
			}
			name := redistest.Name(t)
			c, err := tiered.New[string](name, l1, l2, opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			ctx := context.Background()
			// v1 lives 200 ms in both tiers (its L1 copy ends with its L2 TTL).
			v, err := c.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (string, error) {
				return "v1", tiered.SetTTL(ctx, 200*time.Millisecond)
			})
			if err != nil || v != "v1" {
				t.Fatalf("warm-up = %q, %v", v, err)
			}
			eventually(t, 5*time.Second, "v1 to expire from both tiers", func() bool {
				_, _, ok := l1.Get("k")
				return !ok && rdb.Exists(ctx, name+":k").Val() == 0
			})
			release := make(chan struct{})
			var calls atomic.Int64
			slow := func(ctx context.Context, key string) (string, error) {
				calls.Add(1)
				select {
				case <-release:
					return "v2", nil
				case <-ctx.Done():
					return "", ctx.Err()
				}
			}
			got := make(chan string, 1)
			go func() {
				v, err := c.GetOrLoad(ctx, "k", slow)
				if err != nil {
					v = "error: " + err.Error()
				}
				got <- v
			}()
			if !soft {
				select {
				case v := <-got:
					t.Fatalf("without a soft timeout the caller returned %q before the load ended", v)
				case <-time.After(300 * time.Millisecond): // a bound on how long we watch, not a synchronisation
				}
				close(release)
				if v := <-got; v != "v2" {
					t.Fatalf("after the load: %q, want v2", v)
				}
				return
			}
			select {
			case v := <-got:
				if v != "v1" {
					t.Fatalf("soft timeout: %q, want the expired v1", v)
				}
			case <-time.After(5 * time.Second):
				close(release)
				t.Fatal("no answer within 5 s of a 50 ms soft timeout")
			}
			if st := c.Stats(); st.SoftTimeouts != 1 {
				t.Fatalf("SoftTimeouts = %d, want 1", st.SoftTimeouts)
			}
			close(release)
			eventually(t, 5*time.Second, "the background load to fill v2", func() bool {
				v, ok, err := c.Get(ctx, "k")
				return err == nil && ok && v == "v2"
			})
			if n := calls.Load(); n != 1 {
				t.Fatalf("loader calls = %d, want 1 (the soft answer left the one load running)", n)
			}
		})
	}
}

func TestSoftLoadTimeoutOptions(t *testing.T) {
	l1, err := local.New[string]()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tiered.New[string]("c", l1, nil, tiered.WithSoftLoadTimeout(0, time.Second)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("zero soft timeout: %v, want ErrInvalidOption", err)
	}
	if _, err := tiered.New[string]("c", l1, nil, tiered.WithSoftLoadTimeout(time.Second, -1)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("negative stale window: %v, want ErrInvalidOption", err)
	}
	if _, err := tiered.New[string]("c", nil, nil, tiered.WithSoftLoadTimeout(time.Second, time.Second)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("no L1: %v, want ErrInvalidOption", err)
	}
}
