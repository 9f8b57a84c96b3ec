package remote_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// TestAcquireAndSwapMany: the pipelined lease calls give, key by key, what
// Acquire and CompareAndSwap give, across slots, with the SET NX GET
// command and with the script fallback, and also after the server lost its
// script cache.
func TestAcquireAndSwapMany(t *testing.T) {
	for _, mode := range []string{"set-nx-get", "script", "script-flushed"} {
		t.Run(mode, func(t *testing.T) {
			deployments(t, func(t *testing.T, rdb remote.Client) {
				ctx := context.Background()
				s := newStore(t, rdb)
				if mode != "set-nx-get" {
					remote.ForceAcquireScript(s)
				}
				if mode == "script-flushed" {
					flushScripts(t, rdb)
				}
				name := redistest.Name(t)
				keys := make([]string, 40)
				for i := range keys {
					keys[i] = fmt.Sprintf("%s:%d", name, i)
				}
				exp := time.Now().Add(10 * time.Second)
				// Keys 0-9 hold a value, 10-19 another node's lease, 20-39 are
				// empty.
				val := driver.Entry{Kind: driver.KindValue, Payload: []byte(`"v"`), ExpiresAt: time.Now().Add(time.Minute), Version: 1}
				for i := range 10 {
					if err := s.Set(ctx, keys[i], val); err != nil {
						t.Fatal(err)
					}
				}
				for i := 10; i < 20; i++ {
					if _, won, err := s.Acquire(ctx, keys[i], 999, exp); err != nil || !won {
						t.Fatalf("Acquire(%d) = %v, %v", i, won, err)
					}
				}
				tokens := make([]uint64, len(keys))
				for i := range tokens {
					tokens[i] = uint64(1000 + i)
				}
				cur, won, errs := s.AcquireMany(ctx, keys, tokens, exp)
				if errs != nil {
					t.Fatalf("AcquireMany errors: %v", errs)
				}
				for i := range keys {
					switch {
					case i < 10 && (won[i] || cur[i].Kind != driver.KindValue):
						t.Errorf("key %d (a value): won %v, current %+v", i, won[i], cur[i])
					case i >= 10 && i < 20 && (won[i] || cur[i].Kind != driver.KindLease || cur[i].Version != 999):
						t.Errorf("key %d (held): won %v, current %+v; want the lease of token 999", i, won[i], cur[i])
					case i >= 20 && !won[i]:
						t.Errorf("key %d (empty): not won, current %+v", i, cur[i])
					}
				}
				if e, _ := s.Get(ctx, keys[25]); e.Kind != driver.KindLease || e.Version != tokens[25] {
					t.Fatalf("key 25 after AcquireMany holds %+v, want our lease", e)
				}
				if mode == "script-flushed" {
					flushScripts(t, rdb)
				}
				// Fill all: only the keys whose lease we took swap. A Delete
				// between lease and fill (key 30) kills the fill.
				if err := s.Delete(ctx, keys[30]); err != nil {
					t.Fatal(err)
				}
				entries := make([]driver.Entry, len(keys))
				for i := range entries {
					entries[i] = driver.Entry{Kind: driver.KindValue, Payload: []byte(fmt.Sprint(i)), ExpiresAt: time.Now().Add(time.Minute), Version: uint64(5000 + i)}
				}
				swapped, errs := s.CompareAndSwapMany(ctx, keys, tokens, entries)
				if errs != nil {
					t.Fatalf("CompareAndSwapMany errors: %v", errs)
				}
				for i := range keys {
					want := i >= 20 && i != 30
					if swapped[i] != want {
						t.Errorf("key %d: swapped %v, want %v", i, swapped[i], want)
					}
					e, err := s.Get(ctx, keys[i])
					if err != nil {
						t.Fatal(err)
					}
					switch {
					case i == 30 && e.Kind != driver.KindNone:
						t.Errorf("key 30 was deleted during the load but holds %+v", e)
					case want && (e.Kind != driver.KindValue || string(e.Payload) != fmt.Sprint(i)):
						t.Errorf("key %d holds %+v after its fill", i, e)
					case i >= 10 && i < 20 && (e.Kind != driver.KindLease || e.Version != 999):
						t.Errorf("key %d: another node's lease was overwritten: %+v", i, e)
					}
				}
			})
		})
	}
}

func TestManyReportsPerKeyErrors(t *testing.T) {
	s := newStore(t, redistest.Standalone(t), remote.WithMaxValueBytes(64))
	ctx := context.Background()
	name := redistest.Name(t)
	keys := []string{name + ":a", "", name + ":c"}
	_, won, errs := s.AcquireMany(ctx, keys, []uint64{1, 2, 3}, time.Now().Add(time.Second))
	if errs == nil || errs[1] == nil || errs[0] != nil || errs[2] != nil {
		t.Fatalf("AcquireMany errs = %v; want an error for the empty key only", errs)
	}
	if !won[0] || !won[2] {
		t.Fatalf("AcquireMany won = %v; want the valid keys won", won)
	}
	big := driver.Entry{Kind: driver.KindValue, Payload: make([]byte, 100), ExpiresAt: time.Now().Add(time.Minute)}
	small := driver.Entry{Kind: driver.KindValue, Payload: []byte("1"), ExpiresAt: time.Now().Add(time.Minute)}
	swapped, errs := s.CompareAndSwapMany(ctx, []string{keys[0], keys[2]}, []uint64{1, 3}, []driver.Entry{big, small})
	if errs == nil || errs[0] == nil || errs[1] != nil || swapped[0] || !swapped[1] {
		t.Fatalf("CompareAndSwapMany = %v, %v; want key a too large, key c swapped", swapped, errs)
	}
	if _, _, errs := s.AcquireMany(ctx, keys, []uint64{1}, time.Now()); errs == nil {
		t.Fatal("AcquireMany with fewer tokens than keys succeeded")
	}
}

// flushScripts empties the script cache of every server behind rdb.
func flushScripts(t *testing.T, rdb remote.Client) {
	t.Helper()
	c, ok := rdb.(redis.Cmdable)
	if !ok {
		t.Fatalf("%T is not a redis.Cmdable", rdb)
	}
	if err := c.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
}
