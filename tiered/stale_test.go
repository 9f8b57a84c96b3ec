package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// WithStaleIfError (DESIGN section 7): when L2 and the loader both fail, an
// L1 entry that expired within the window is served, counted; otherwise the
// loader's error is returned.
func TestStaleIfError(t *testing.T) {
	srv := redistest.NewServer(t)
	l2, err := remote.New(srv.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	newCache := func(opts ...tiered.Option) (*tiered.Cache[string], *local.Store[string]) {
		l1, err := local.New[string](local.WithKeepStale(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		all := append([]tiered.Option{tiered.WithLocalTTL(50 * time.Millisecond), tiered.WithErrorHandler(func(context.Context, error) {}),
			tiered.WithCircuitBreaker(0, 0)}, opts...)
		c, err := tiered.New[string](redistest.Name(t), l1, l2, all...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, l1
	}
	withStale, l1 := newCache(tiered.WithStaleIfError(time.Minute))
	without, l1b := newCache()
	ctx := context.Background()
	good := func(context.Context, string) (string, error) { return "v1", nil }
	boom := errors.New("db down")
	bad := func(context.Context, string) (string, error) { return "", boom }
	for _, c := range []*tiered.Cache[string]{withStale, without} {
		if v, err := c.GetOrLoad(ctx, "k", good); err != nil || v != "v1" {
			t.Fatalf("warm-up = %q, %v", v, err)
		}
	}
	eventually(t, 5*time.Second, "the L1 entries never expired", func() bool {
		_, _, ok1 := l1.Get("k")
		_, _, ok2 := l1b.Get("k")
		return !ok1 && !ok2
	})
	srv.Stop(t)
	if v, err := withStale.GetOrLoad(ctx, "k", bad); err != nil || v != "v1" {
		t.Fatalf("with StaleIfError, L2 and loader down = %q, %v; want the stale v1", v, err)
	}
	if st := withStale.Stats(); st.StaleServed != 1 {
		t.Fatalf("StaleServed = %d, want 1", st.StaleServed)
	}
	if _, err := without.GetOrLoad(ctx, "k", bad); !errors.Is(err, boom) {
		t.Fatalf("without StaleIfError = %v, want the loader's error", err)
	}
	if _, err := withStale.GetOrLoad(ctx, "never", bad); !errors.Is(err, boom) {
		t.Fatalf("a key never cached = %v, want the loader's error", err)
	}
	// Without an L1 that keeps stale entries the option is rejected.
	if _, err := tiered.New[string]("x", nil, l2, tiered.WithStaleIfError(time.Second)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("StaleIfError without L1 = %v, want ErrInvalidOption", err)
	}
}
