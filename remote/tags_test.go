package remote_test

import (
	"context"
	"errors"
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
	EnsureGenerationsThen(ctx context.Context, keys []string, ttl time.Duration, then []string) (gens, thenGens []uint64, err error)
	GetOrCreateGeneration(ctx context.Context, key string, ttl time.Duration) (uint64, error)
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

// TestGetOrCreateGeneration: it creates a generation living ttl where there
// is none and returns an existing one as it is, its life untouched (with SET
// NX GET, and with the script used on servers older than Redis 7.0).
func TestGetOrCreateGeneration(t *testing.T) {
	for _, script := range []bool{false, true} {
		t.Run(map[bool]string{false: "SET NX GET", true: "script"}[script], func(t *testing.T) {
			deployments(t, func(t *testing.T, rdb remote.Client) {
				ctx := context.Background()
				s := newStore(t, rdb)
				if script {
					remote.ForceAcquireScript(s)
				}
				cmd := rdb.(redis.Cmdable)
				key := redistest.Name(t) + ":\x00tag:"
				created, err := s.GetOrCreateGeneration(ctx, key, time.Minute)
				if err != nil || created == 0 {
					t.Fatalf("GetOrCreateGeneration of a new key = %d, %v; want a non-zero generation", created, err)
				}
				if gens, err := s.Generations(ctx, []string{key}); err != nil || gens[0] != created {
					t.Fatalf("Generations after creating %d = %v, %v", created, gens, err)
				}
				if d, err := cmd.PTTL(ctx, key).Result(); err != nil || d <= 50*time.Second || d > time.Minute {
					t.Fatalf("PTTL of the created generation = %v, %v; want about a minute", d, err)
				}
				again, err := s.GetOrCreateGeneration(ctx, key, time.Hour)
				if err != nil || again != created {
					t.Fatalf("GetOrCreateGeneration again = %d, %v; want %d", again, err, created)
				}
				if d, err := cmd.PTTL(ctx, key).Result(); err != nil || d > time.Minute {
					t.Fatalf("PTTL after asking for an hour = %v, %v; want the minute left as it was", d, err)
				}
				if err := cmd.Set(ctx, key, "junk", time.Minute).Err(); err != nil {
					t.Fatal(err)
				}
				if g, err := s.GetOrCreateGeneration(ctx, key, time.Minute); err == nil {
					t.Fatalf("GetOrCreateGeneration of a key holding junk = %d, nil; want an error", g)
				}
				if _, err := s.GetOrCreateGeneration(ctx, key, 0); !errors.Is(err, remote.ErrInvalidOption) {
					t.Fatalf("GetOrCreateGeneration with a zero TTL = %v, want ErrInvalidOption", err)
				}
			})
		})
	}
}

// TestEnsureGenerationsThen: the generations of keys exist afterwards and
// are returned, then those of the other keys as Generations reads them (0
// for none).
func TestEnsureGenerationsThen(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s := newStore(t, rdb)
		p := redistest.Name(t) + ":\x00tag:"
		epoch, err := s.GetOrCreateGeneration(ctx, p, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		gens, then, err := s.EnsureGenerationsThen(ctx, []string{p + "a", p + "b"}, time.Minute, []string{p, p + "none"})
		if err != nil || len(gens) != 2 || gens[0] == 0 || gens[1] == 0 || gens[0] == gens[1] {
			t.Fatalf("EnsureGenerationsThen = %v, %v; want two distinct non-zero generations", gens, err)
		}
		if len(then) != 2 || then[0] != epoch || then[1] != 0 {
			t.Fatalf("EnsureGenerationsThen read %v; want [%d 0]", then, epoch)
		}
		again, err := s.Generations(ctx, []string{p + "a", p + "b"})
		if err != nil || again[0] != gens[0] || again[1] != gens[1] {
			t.Fatalf("Generations after = %v, %v; want %v", again, err, gens)
		}
		if _, _, err := s.EnsureGenerationsThen(ctx, []string{p + "a"}, 0, []string{p}); !errors.Is(err, remote.ErrInvalidOption) {
			t.Fatalf("EnsureGenerationsThen with a zero TTL = %v, want ErrInvalidOption", err)
		}
	})
}
