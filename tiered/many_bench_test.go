package tiered_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// mgetFloor reads keys with one MGET per slot in one pipeline.
func mgetFloor(ctx context.Context, rdb redis.UniversalClient, keys []string) error {
	bySlot := map[int][]string{}
	var order []int
	for _, k := range keys {
		s := slotOf(k)
		if _, ok := bySlot[s]; !ok {
			order = append(order, s)
		}
		bySlot[s] = append(bySlot[s], k)
	}
	pipe := rdb.Pipeline()
	for _, s := range order {
		pipe.MGet(ctx, bySlot[s]...)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// slotOf is the Cluster hash slot of a key without a hash tag.
func slotOf(key string) int {
	crc := uint16(0)
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

// BenchmarkGetOrLoadManyWarm: 100 keys in L2 and not in L1, on the
// Cluster, read with one GetOrLoadMany, L2 only and with L1 fills, against
// the floor of one pipelined MGET per slot, interleaved call by call.
func BenchmarkGetOrLoadManyWarm(b *testing.B) {
	ctx := context.Background()
	rdb := redistest.Cluster(b)
	name := redistest.Name(b)
	st, err := remote.New(rdb)
	if err != nil {
		b.Fatal(err)
	}
	l1, err := local.New[user]()
	if err != nil {
		b.Fatal(err)
	}
	withL1, err := tiered.New[user](name, l1, st, tiered.WithRemoteTimeout(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer withL1.Close()
	l2Only, err := tiered.New[user](name, nil, st, tiered.WithRemoteTimeout(time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer l2Only.Close()
	keys := make([]string, 100)
	full := make([]string, len(keys))
	items := make(map[string]user, len(keys))
	for i := range keys {
		keys[i] = "w" + strconv.Itoa(i)
		full[i] = name + ":" + keys[i]
		items[keys[i]] = user{ID: keys[i], Name: "a user of some length"}
	}
	if err := withL1.SetMany(ctx, items); err != nil {
		b.Fatal(err)
	}
	noLoad := func(_ context.Context, keys []string) (map[string]user, error) {
		return nil, fmt.Errorf("loader called for %d keys", len(keys))
	}
	var tf, t2, t1 time.Duration
	n := 0
	for b.Loop() {
		l1.Invalidate(keys...)
		l1.Wait()
		s := time.Now()
		if err := mgetFloor(ctx, rdb, full); err != nil {
			b.Fatal(err)
		}
		tf += time.Since(s)
		s = time.Now()
		if m, err := l2Only.GetOrLoadMany(ctx, keys, noLoad); err != nil || len(m) != len(keys) {
			b.Fatal(len(m), err)
		}
		t2 += time.Since(s)
		s = time.Now()
		if m, err := withL1.GetOrLoadMany(ctx, keys, noLoad); err != nil || len(m) != len(keys) {
			b.Fatal(len(m), err)
		}
		t1 += time.Since(s)
		n++
	}
	b.ReportMetric(float64(tf.Microseconds())/float64(n), "floor-µs")
	b.ReportMetric(float64(t2)/float64(tf), "L2only/floor")
	b.ReportMetric(float64(t1)/float64(tf), "withL1/floor")
}
