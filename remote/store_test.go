package remote_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

var _ driver.Remote = (*remote.Store)(nil)

// Both deployments every Redis test runs against.
func deployments(t *testing.T, f func(t *testing.T, rdb remote.Client)) {
	t.Run("standalone", func(t *testing.T) { f(t, redistest.Standalone(t)) })
	t.Run("cluster", func(t *testing.T) { f(t, redistest.Cluster(t)) })
}

func newStore(t *testing.T, rdb remote.Client, opts ...remote.Option) *remote.Store {
	t.Helper()
	s, err := remote.New(rdb, opts...)
	if err != nil {
		t.Fatalf("remote.New: %v", err)
	}
	return s
}

func TestSetGetDelete(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s := newStore(t, rdb)
		key := redistest.Name(t) + ":k"
		if e, err := s.Get(ctx, key); err != nil || e.Kind != driver.KindNone {
			t.Fatalf("Get on empty = %+v, %v; want a miss", e, err)
		}
		want := driver.Entry{Kind: driver.KindValue, Payload: []byte(`"v"`), ExpiresAt: time.Now().Add(time.Minute).Truncate(time.Millisecond), LoadTime: time.Millisecond, Version: 5}
		if err := s.Set(ctx, key, want); err != nil {
			t.Fatalf("Set: %v", err)
		}
		got, err := s.Get(ctx, key)
		if err != nil || got.Kind != want.Kind || string(got.Payload) != `"v"` || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Version != 5 || got.LoadTime != time.Millisecond {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
		}
		ttl := redistestTTL(t, rdb, key)
		if ttl <= 50*time.Second || ttl > time.Minute {
			t.Errorf("PTTL = %v, want about 1m", ttl)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if e, _ := s.Get(ctx, key); e.Kind != driver.KindNone {
			t.Fatalf("Get after Delete = %+v, want a miss", e)
		}
	})
}

func redistestTTL(t *testing.T, rdb remote.Client, key string) time.Duration {
	t.Helper()
	c, ok := rdb.(redis.Cmdable)
	if !ok {
		t.Fatalf("%T is not a redis.Cmdable", rdb)
	}
	d, err := c.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("PTTL: %v", err)
	}
	return d
}

func TestGetManyAndDeleteAcrossSlots(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s := newStore(t, rdb)
		ns := redistest.Name(t)
		var keys []string
		for i := range 200 {
			keys = append(keys, fmt.Sprintf("%s:%d", ns, i))
		}
		exp := time.Now().Add(time.Minute)
		for i, k := range keys {
			if i%3 == 0 {
				continue // leave a third missing
			}
			if err := s.Set(ctx, k, driver.Entry{Kind: driver.KindValue, Payload: []byte(fmt.Sprint(i)), ExpiresAt: exp}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.GetMany(ctx, keys)
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		if len(got) != len(keys) {
			t.Fatalf("GetMany returned %d entries, want %d", len(got), len(keys))
		}
		for i, e := range got {
			switch {
			case i%3 == 0 && e.Kind != driver.KindNone:
				t.Errorf("key %d: got %+v, want a miss", i, e)
			case i%3 != 0 && (e.Kind != driver.KindValue || string(e.Payload) != fmt.Sprint(i)):
				t.Errorf("key %d: got kind %d payload %q, want value %d", i, e.Kind, e.Payload, i)
			}
		}
		if err := s.Delete(ctx, keys...); err != nil {
			t.Fatalf("Delete of %d keys across slots: %v", len(keys), err)
		}
		got, err = s.GetMany(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range got {
			if e.Kind != driver.KindNone {
				t.Fatalf("key %d survived Delete", i)
			}
		}
	})
}

func TestCorruptValueIsAMiss(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s := newStore(t, rdb)
		c := rdb.(redis.Cmdable)
		key := redistest.Name(t) + ":corrupt"
		for i, planted := range []string{"garbage", "\xC7\x01\x01short", strings.Repeat("\x00", 40)} {
			if err := c.Set(ctx, key, planted, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			e, err := s.Get(ctx, key)
			if err != nil || e.Kind != driver.KindNone {
				t.Fatalf("Get of planted %q = %+v, %v; want a miss", planted, e, err)
			}
			if n := c.Exists(ctx, key).Val(); n != 0 {
				t.Fatalf("corrupt value %q was not deleted", planted)
			}
			if got := s.Stats().Corrupt; got != uint64(i+1) {
				t.Fatalf("Stats.Corrupt = %d, want %d", got, i+1)
			}
		}
		// Through GetMany too.
		c.Set(ctx, key, "junk", time.Minute)
		got, err := s.GetMany(ctx, []string{key})
		if err != nil || got[0].Kind != driver.KindNone {
			t.Fatalf("GetMany of junk = %+v, %v; want a miss", got, err)
		}
		if n := c.Exists(ctx, key).Val(); n != 0 {
			t.Fatal("GetMany did not delete the junk")
		}
		// And under a lease attempt: the junk is deleted, the next attempt wins.
		c.Set(ctx, key, "junk", time.Minute)
		if _, won, err := s.Acquire(ctx, key, 1, time.Now().Add(time.Second)); err != nil || won {
			t.Fatalf("Acquire over junk = won %v, %v; want not won, nil", won, err)
		}
		if _, won, err := s.Acquire(ctx, key, 1, time.Now().Add(time.Second)); err != nil || !won {
			t.Fatalf("Acquire after junk deleted = won %v, %v; want won", won, err)
		}
	})
}

func TestLimits(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	s := newStore(t, rdb, remote.WithMaxKeyBytes(64), remote.WithMaxValueBytes(100))
	exp := time.Now().Add(time.Minute)
	small := driver.Entry{Kind: driver.KindValue, Payload: []byte("x"), ExpiresAt: exp}
	long := strings.Repeat("k", 65)
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"get empty", errOf(s.Get(ctx, "")), remote.ErrEmptyKey},
		{"set empty", s.Set(ctx, "", small), remote.ErrEmptyKey},
		{"delete empty", s.Delete(ctx, "ok", ""), remote.ErrEmptyKey},
		{"get long", errOf(s.Get(ctx, long)), remote.ErrKeyTooLong},
		{"getmany long", errOf(s.GetMany(ctx, []string{"a", long})), remote.ErrKeyTooLong},
		{"set long", s.Set(ctx, long, small), remote.ErrKeyTooLong},
		{"set large", s.Set(ctx, redistest.Name(t), driver.Entry{Kind: driver.KindValue, Payload: make([]byte, 74), ExpiresAt: exp}), remote.ErrValueTooLarge},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	// Exactly at the limit is fine.
	if err := s.Set(ctx, redistest.Name(t), driver.Entry{Kind: driver.KindValue, Payload: make([]byte, 73), ExpiresAt: exp}); err != nil {
		t.Errorf("value at the limit: %v", err)
	}
}

func errOf[T any](_ T, err error) error { return err }

func TestOptionsRejected(t *testing.T) {
	rdb := redistest.Standalone(t)
	for name, opt := range map[string]remote.Option{
		"nil codec":  remote.WithCodec(nil),
		"zero key":   remote.WithMaxKeyBytes(0),
		"tiny value": remote.WithMaxValueBytes(27),
	} {
		if _, err := remote.New(rdb, opt); !errors.Is(err, remote.ErrInvalidOption) {
			t.Errorf("%s: New = %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := remote.New(nil); !errors.Is(err, remote.ErrInvalidOption) {
		t.Errorf("New(nil) = %v, want ErrInvalidOption", err)
	}
}

func TestLeases(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s := newStore(t, rdb)
		key := redistest.Name(t) + ":lease"
		exp := time.Now().Add(10 * time.Second)
		if _, won, err := s.Acquire(ctx, key, 11, exp); err != nil || !won {
			t.Fatalf("first Acquire: won %v, %v", won, err)
		}
		cur, won, err := s.Acquire(ctx, key, 22, exp)
		if err != nil || won || cur.Kind != driver.KindLease || cur.Version != 11 {
			t.Fatalf("second Acquire = %+v, won %v, %v; want the lease with token 11", cur, won, err)
		}
		val := driver.Entry{Kind: driver.KindValue, Payload: []byte(`1`), ExpiresAt: time.Now().Add(time.Minute), Version: 12}
		if ok, err := s.CompareAndSwap(ctx, key, 22, val); err != nil || ok {
			t.Fatalf("Fill with a foreign token = %v, %v; want false", ok, err)
		}
		if ok, err := s.CompareAndSwap(ctx, key, 11, val); err != nil || !ok {
			t.Fatalf("Fill with our token = %v, %v; want true", ok, err)
		}
		if e, _ := s.Get(ctx, key); e.Kind != driver.KindValue {
			t.Fatalf("after Fill: %+v", e)
		}
		cur, won, _ = s.Acquire(ctx, key, 33, exp)
		if won || cur.Kind != driver.KindValue {
			t.Fatalf("Acquire over a value = %+v, won %v; want the value", cur, won)
		}
		if ok, _ := s.CompareAndSwap(ctx, key, 11, val); ok {
			t.Fatal("second fill with a spent token succeeded")
		}
		// The value's own version works as a compare-and-swap (early refresh).
		newer := driver.Entry{Kind: driver.KindValue, Payload: []byte(`2`), ExpiresAt: time.Now().Add(time.Minute), Version: 99}
		if ok, err := s.CompareAndSwap(ctx, key, val.Version, newer); err != nil || !ok {
			t.Fatalf("CompareAndSwap on the value's version = %v, %v", ok, err)
		}
		if ok, _ := s.CompareAndSwap(ctx, key, val.Version, val); ok {
			t.Fatal("CompareAndSwap with a stale version succeeded")
		}

		// A Delete during the load kills the lease: the fill must not land.
		s.Delete(ctx, key)
		s.Acquire(ctx, key, 44, exp)
		s.Delete(ctx, key)
		if ok, _ := s.CompareAndSwap(ctx, key, 44, val); ok {
			t.Fatal("Fill after Delete landed a stale value")
		}
		if e, _ := s.Get(ctx, key); e.Kind != driver.KindNone {
			t.Fatalf("key holds %+v after a rejected fill", e)
		}

		// Release only removes our own lease.
		s.Acquire(ctx, key, 55, exp)
		if ok, err := s.CompareAndDelete(ctx, key, 66); err != nil || ok {
			t.Fatalf("CompareAndDelete with a foreign token = %v, %v", ok, err)
		}
		if e, _ := s.Get(ctx, key); e.Kind != driver.KindLease {
			t.Fatal("Release with a foreign token removed the lease")
		}
		if ok, err := s.CompareAndDelete(ctx, key, 55); err != nil || !ok {
			t.Fatalf("CompareAndDelete with our token = %v, %v", ok, err)
		}
		if e, _ := s.Get(ctx, key); e.Kind != driver.KindNone {
			t.Fatal("Release with our token left the lease")
		}
	})
}

func TestLeaseExpires(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	s := newStore(t, rdb)
	key := redistest.Name(t)
	if _, won, _ := s.Acquire(ctx, key, 1, time.Now().Add(30*time.Millisecond)); !won {
		t.Fatal("Acquire lost on an empty key")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, won, err := s.Acquire(ctx, key, 2, time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if won {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a 30 ms lease still held after 5 s")
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func TestCodec(t *testing.T) {
	s := newStore(t, redistest.Standalone(t))
	b, err := s.Marshal(map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if err := s.Unmarshal(b, &got); err != nil || got["a"] != 1 {
		t.Fatalf("Unmarshal = %v, %v", got, err)
	}
	if err := s.Unmarshal([]byte("{"), &got); err == nil {
		t.Fatal("Unmarshal of broken JSON succeeded")
	}
}

func TestAcquireScriptFallback(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		s := newStore(t, rdb)
		remote.ForceAcquireScript(s)
		key := redistest.Name(t)
		exp := time.Now().Add(10 * time.Second)
		if _, won, err := s.Acquire(ctx, key, 7, exp); err != nil || !won {
			t.Fatalf("scripted Acquire on empty key: won %v, %v", won, err)
		}
		cur, won, err := s.Acquire(ctx, key, 8, exp)
		if err != nil || won || cur.Kind != driver.KindLease || cur.Version != 7 {
			t.Fatalf("scripted Acquire on held key = %+v, %v, %v", cur, won, err)
		}
		if ttl := redistestTTL(t, rdb, key); ttl <= 0 || ttl > 10*time.Second {
			t.Fatalf("scripted lease PTTL = %v, want within 10s", ttl)
		}
	})
}
