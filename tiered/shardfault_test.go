package tiered_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
	"github.com/tiercache/tiercache/tiered/driver/memremote"
)

// twoShards is the in-memory reference L2 split into two shards by key:
// keys ending in "-b" are on shard b, whose reads fail.
type twoShards struct {
	*memremote.Store
}

var errShardB = errors.New("shard b is down")

func (twoShards) Shard(key string) string {
	if strings.HasSuffix(key, "-b") {
		return "b"
	}
	return "a"
}

func (s twoShards) GetMany(ctx context.Context, keys []string) ([]driver.Entry, error) {
	for _, k := range keys {
		if strings.HasSuffix(k, "-b") {
			return nil, errShardB
		}
	}
	return s.Store.GetMany(ctx, keys)
}

// TestBatchReadsFailPerShard: when one shard's reads fail, GetMany and
// Touch report that shard's keys and still answer or touch the others; a
// failing shard does not cost the keys of a healthy one.
func TestBatchReadsFailPerShard(t *testing.T) {
	mem, err := memremote.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiered.New[string]("shards", nil, twoShards{mem}, tiered.WithErrorHandler(func(context.Context, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	keys := []string{"1-a", "2-a", "3-b", "4-b"}
	for _, k := range keys {
		if err := c.Set(ctx, k, "v"+k); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.GetMany(ctx, keys...)
	var kerrs tiered.KeyErrors
	if !errors.As(err, &kerrs) || len(kerrs) != 2 || !errors.Is(kerrs["3-b"], errShardB) || !errors.Is(kerrs["4-b"], errShardB) {
		t.Fatalf("GetMany err = %v, want the two keys of shard b", err)
	}
	if len(got) != 2 || got["1-a"] != "v1-a" || got["2-a"] != "v2-a" {
		t.Fatalf("GetMany = %v, want shard a's keys", got)
	}
	err = c.Touch(ctx, keys...)
	if !errors.As(err, &kerrs) || len(kerrs) != 2 || kerrs["1-a"] != nil || kerrs["2-a"] != nil {
		t.Fatalf("Touch err = %v, want the two keys of shard b only", err)
	}
	if st := c.Stats(); st.Touches != 2 {
		t.Fatalf("Touches = %d, want 2 (shard a's keys)", st.Touches)
	}
}
