package remote_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// tiered uses tag generations when the store has them (an optional
// interface).
var _ interface {
	Generations(ctx context.Context, keys []string) ([]uint64, error)
	EnsureGenerations(ctx context.Context, keys []string, ttl time.Duration) ([]uint64, error)
	BumpGenerations(ctx context.Context, keys []string, ttl time.Duration) error
} = (*remote.Store)(nil)

func TestGenerations(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s, err := remote.New(rdb)
		if err != nil {
			t.Fatal(err)
		}
		p := redistest.Name(t) + ":\x00tag:"
		keys := []string{p + "a", p + "b", p + "c"}
		gens, err := s.Generations(ctx, keys)
		if err != nil || len(gens) != 3 || gens[0]|gens[1]|gens[2] != 0 {
			t.Fatalf("Generations of new keys = %v, %v; want zeros", gens, err)
		}
		ensured, err := s.EnsureGenerations(ctx, keys[:2], time.Minute)
		if err != nil || ensured[0] == 0 || ensured[1] == 0 || ensured[0] == ensured[1] {
			t.Fatalf("EnsureGenerations = %v, %v; want two distinct non-zero", ensured, err)
		}
		again, err := s.EnsureGenerations(ctx, keys[:2], 2*time.Minute)
		if err != nil || again[0] != ensured[0] || again[1] != ensured[1] {
			t.Fatalf("EnsureGenerations again = %v, %v; want %v", again, err, ensured)
		}
		// Ensure extends a shorter life, never shortens a longer one.
		cmd := rdb.(redis.Cmdable)
		if d, err := cmd.PTTL(ctx, keys[0]).Result(); err != nil || d <= time.Minute {
			t.Fatalf("PTTL after ensuring 2 min = %v, %v", d, err)
		}
		if _, err := s.EnsureGenerations(ctx, keys[:1], time.Second); err != nil {
			t.Fatal(err)
		}
		if d, err := cmd.PTTL(ctx, keys[0]).Result(); err != nil || d <= time.Minute {
			t.Fatalf("PTTL after ensuring 1 s = %v, %v; want the longer life kept", d, err)
		}
		if err := s.BumpGenerations(ctx, keys[1:], time.Minute); err != nil {
			t.Fatal(err)
		}
		gens, err = s.Generations(ctx, keys)
		if err != nil || gens[0] != ensured[0] || gens[1] == ensured[1] || gens[1] == 0 || gens[2] == 0 {
			t.Fatalf("after bumping b and c: %v, %v (ensured %v)", gens, err, ensured)
		}
		if _, err := s.EnsureGenerations(ctx, keys, 0); err == nil {
			t.Fatal("EnsureGenerations with a zero TTL succeeded")
		}
	})
}
