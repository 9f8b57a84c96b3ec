package tiered_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// TestTouch: Touch extends the L2 life of values and not-founds across
// shards without changing them (same bytes, same version), creates nothing
// for a missing key, and reports an invalid key while touching the others.
func TestTouch(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		name := redistest.Name(t)
		c := newNode[string](t, name, rdb, tiered.WithRemoteTTL(time.Hour), tiered.WithJitter(0))
		ctx := context.Background()
		keys := []string{"a", "b", "c", "d", "e", "f"}
		for _, k := range keys {
			if err := c.Set(ctx, k, "v-"+k, tiered.TTL(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.GetOrLoad(ctx, "absent", func(context.Context, string) (string, error) { return "", tiered.ErrNotFound }); !errors.Is(err, tiered.ErrNotFound) {
			t.Fatalf("not-found load: %v", err)
		}
		before := map[string]string{}
		for _, k := range keys {
			before[k] = rdb.Get(ctx, name+":"+k).Val()
			if pttl := rdb.PTTL(ctx, name+":"+k).Val(); pttl > time.Minute {
				t.Fatalf("%s: PTTL %v before Touch, want at most a minute", k, pttl)
			}
		}
		err := c.Touch(ctx, append(keys, "absent", "", "missing")...)
		var kerrs tiered.KeyErrors
		if !errors.As(err, &kerrs) || len(kerrs) != 1 || kerrs[""] == nil {
			t.Fatalf("Touch with an empty key: %v, want a KeyErrors naming only it", err)
		}
		for _, k := range keys {
			if pttl := rdb.PTTL(ctx, name+":"+k).Val(); pttl < 59*time.Minute {
				t.Errorf("%s: PTTL %v after Touch, want about an hour", k, pttl)
			}
			after := rdb.Get(ctx, name+":"+k).Val()
			if len(after) != len(before[k]) || after[len(after)-len("v-"+k)-2:] != before[k][len(before[k])-len("v-"+k)-2:] {
				t.Errorf("%s: the value changed: %q -> %q", k, before[k], after)
			}
			if v, ok, err := c.Get(ctx, k); err != nil || !ok || v != "v-"+k {
				t.Errorf("%s after Touch: %q, %v, %v", k, v, ok, err)
			}
		}
		if pttl := rdb.PTTL(ctx, name+":absent").Val(); pttl > 31*time.Second || pttl <= 0 {
			t.Errorf("not-found entry: PTTL %v after Touch, want NotFoundTTL (30 s)", pttl)
		}
		if n := rdb.Exists(ctx, name+":missing").Val(); n != 0 {
			t.Errorf("Touch created an entry for a missing key")
		}
		if st := c.Stats(); st.Touches != uint64(len(keys)+1) {
			t.Errorf("Touches = %d, want %d", st.Touches, len(keys)+1)
		}
	})
}

// TestTouchKeepsVersion: a touched value keeps its version, so a
// CompareAndSet made with the version read before the Touch still wins.
func TestTouchKeepsVersion(t *testing.T) {
	name := redistest.Name(t)
	c := newNode[string](t, name, redistest.Standalone(t))
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	_, ver, ok, err := c.GetVersioned(ctx, "k")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := c.Touch(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if swapped, err := c.CompareAndSet(ctx, "k", ver, "v2"); err != nil || !swapped {
		t.Fatalf("CompareAndSet after Touch = %v, %v; want swapped", swapped, err)
	}
}

// TestSlidingTTL: with WithSlidingTTL a read from L2 of an entry written
// more than the interval ago extends it once; 200 more reads of the hot key
// write nothing. The reader's clock is 5 minutes ahead, which stands for 5
// minutes having passed since the write.
func TestSlidingTTL(t *testing.T) {
	eachDeployment(t, func(t *testing.T, rdb redis.UniversalClient) {
		name := redistest.Name(t)
		ctx := context.Background()
		writer := newNode[string](t, name, rdb, tiered.WithRemoteTTL(10*time.Minute), tiered.WithJitter(0))
		st, err := remote.New(rdb)
		if err != nil {
			t.Fatal(err)
		}
		reader, err := tiered.New[string](name, nil, st, tiered.WithRemoteTTL(10*time.Minute), tiered.WithJitter(0),
			tiered.WithSlidingTTL(time.Minute), tiered.WithClock(aheadClock{5 * time.Minute}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reader.Close() })
		if err := writer.Set(ctx, "hot", "v"); err != nil {
			t.Fatal(err)
		}
		noLoad := func(context.Context, string) (string, error) { return "", errors.New("loader called on a hit") }
		if v, err := reader.GetOrLoad(ctx, "hot", noLoad); err != nil || v != "v" {
			t.Fatalf("read: %q, %v", v, err)
		}
		eventually(t, 5*time.Second, "the read to extend the entry", func() bool { return reader.Stats().Touches == 1 })
		// Extended to the reader's now + 10 min: 15 minutes of real time.
		if pttl := rdb.PTTL(ctx, name+":hot").Val(); pttl < 14*time.Minute {
			t.Fatalf("PTTL %v after the slide, want about 15 min", pttl)
		}
		for range 200 {
			if _, err := reader.GetOrLoad(ctx, "hot", noLoad); err != nil {
				t.Fatal(err)
			}
		}
		if n := reader.Stats().Touches; n != 1 {
			t.Fatalf("Touches after 200 more reads = %d, want 1 (at most one write per interval)", n)
		}
		if n := writer.Stats().Touches; n != 0 {
			t.Fatalf("the writer, without WithSlidingTTL, touched %d entries", n)
		}
	})
}

func TestSlidingTTLOptions(t *testing.T) {
	if _, err := tiered.New[string]("c", nil, nil, tiered.WithSlidingTTL(0)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("zero interval: %v, want ErrInvalidOption", err)
	}
	st, err := remote.New(redistest.Standalone(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tiered.New[string]("c", nil, st, tiered.WithRemoteTTL(time.Minute), tiered.WithSlidingTTL(time.Minute)); !errors.Is(err, tiered.ErrInvalidOption) {
		t.Fatalf("interval = RemoteTTL: %v, want ErrInvalidOption", err)
	}
}
