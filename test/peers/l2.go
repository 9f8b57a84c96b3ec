package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	gocache "github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"golang.org/x/sync/singleflight"
)

// l2Hit: sequential reads of a value held in L2 only (no L1), against a raw
// go-redis GET of the same bytes, on the standalone server and the Cluster.
func l2Hit(ctx context.Context, e *env, cfg config) ([]*row, error) {
	var rows []*row
	for _, dep := range []string{"standalone", "cluster"} {
		r := newRow("L2 hit", "sequential, "+dep, "µs", "go-redis GET of the same bytes", "≤ 1.15x raw GET")
		name := e.run + "-l2" + dep
		n, err := e.newNode(dep, name, nodeOpts{noL1: true})
		if err != nil {
			return nil, err
		}
		defer n.close()
		v := mkVal(7)
		if err := n.c.Set(ctx, "hot", v); err != nil {
			return nil, err
		}
		rdb := n.rdb
		raw, err := rdb.Get(ctx, name+":hot").Bytes()
		if err != nil {
			return nil, err
		}
		rawKey := name + ":raw"
		if err := rdb.Set(ctx, rawKey, raw, time.Hour).Err(); err != nil {
			return nil, err
		}
		gc := gocache.New(&gocache.Options{Redis: rdb})
		if err := gc.Set(&gocache.Item{Ctx: ctx, Key: name + ":gc", Value: v, TTL: time.Hour}); err != nil {
			return nil, err
		}
		load := func(context.Context, string) (val, error) {
			return val{}, fmt.Errorf("peers: loader called on an L2 hit")
		}
		us := func(f func() error) func() (float64, error) {
			return func() (float64, error) {
				var err error
				ns := sequential(cfg.l2Ops, func(int) {
					if e := f(); e != nil && err == nil {
						err = e
					}
				})
				return ns / 1000, err
			}
		}
		var sf singleflight.Group
		getDecode := func(ctx context.Context) (any, error) {
			b, err := rdb.Get(ctx, rawKey).Bytes()
			if err != nil {
				return nil, err
			}
			en, err := remote.Decode(b)
			if err != nil {
				return nil, err
			}
			var out val
			err = json.Unmarshal(en.Payload, &out)
			return out, err
		}
		cands := []candidate{
			{"go-redis GET of the same bytes", us(func() error { return rdb.Get(ctx, rawKey).Err() })},
			{"go-redis GET + decode", us(func() error {
				b, err := rdb.Get(ctx, rawKey).Bytes()
				if err != nil {
					return err
				}
				en, err := remote.Decode(b)
				if err != nil {
					return err
				}
				var out val
				return json.Unmarshal(en.Payload, &out)
			})},
			{"tiercache Get", us(func() error {
				if _, ok, err := n.c.Get(ctx, "hot"); !ok || err != nil {
					return fmt.Errorf("tiercache Get: ok %v, %v", ok, err)
				}
				return nil
			})},
			{"tiercache GetOrLoad", us(func() error {
				_, err := n.c.GetOrLoad(ctx, "hot", load)
				return err
			})},
			// GetOrLoad's L2 step built on x/sync/singleflight instead
			// of tiercache's typed flight, the same GET + decode inside:
			// Do runs it on the caller (then one caller's cancellation
			// fails every caller that joined); DoChan on a goroutine of
			// its own with a detached context (what keeps callers apart,
			// as GetOrLoad does), boxing the value in an interface.
			{"x/sync/singleflight Do + GET + decode", us(func() error {
				_, err, _ := sf.Do("hot", func() (any, error) { return getDecode(ctx) })
				return err
			})},
			{"x/sync/singleflight DoChan + GET + decode", us(func() error {
				r := <-sf.DoChan("hot", func() (any, error) { return getDecode(context.WithoutCancel(ctx)) })
				return r.Err
			})},
			{"go-redis/cache Get (Redis only)", us(func() error {
				var out val
				return gc.Get(ctx, name+":gc", &out)
			})},
		}
		if err := interleave(r, cfg.rounds, cands); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// slotOf is the Redis Cluster hash slot of key (CRC16/XMODEM mod 16384,
// honouring hash tags).
func slotOf(key string) uint16 {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					break
				}
			}
			break
		}
	}
	var crc uint16
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
	return crc % 16384
}

// bySlot groups keys by hash slot.
func bySlot(keys []string) [][]string {
	m := map[uint16][]string{}
	var order []uint16
	for _, k := range keys {
		s := slotOf(k)
		if _, ok := m[s]; !ok {
			order = append(order, s)
		}
		m[s] = append(m[s], k)
	}
	out := make([][]string, len(order))
	for i, s := range order {
		out[i] = m[s]
	}
	return out
}

// mgetFloor reads keys with one MGET per slot in one pipeline.
func mgetFloor(ctx context.Context, rdb redis.UniversalClient, keys []string) ([]*redis.SliceCmd, error) {
	pipe := rdb.Pipeline()
	groups := bySlot(keys)
	cmds := make([]*redis.SliceCmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.MGet(ctx, g...)
	}
	_, err := pipe.Exec(ctx)
	return cmds, err
}

func batchLoader(_ context.Context, keys []string) (map[string]val, error) {
	out := make(map[string]val, len(keys))
	for i, k := range keys {
		out[k] = mkVal(int64(i))
	}
	return out, nil
}

// batches: GetOrLoadMany of 100 keys on the Cluster, cold (the loader is
// called for all) and warm (all in L2, none in L1), against pipelined
// floors.
func batches(ctx context.Context, e *env, cfg config) ([]*row, error) {
	const size = 100
	dep := "cluster"
	name := e.run + "-many"
	withL1, err := e.newNode(dep, name, nodeOpts{})
	if err != nil {
		return nil, err
	}
	defer withL1.close()
	l2Only, err := e.newNode(dep, name, nodeOpts{noL1: true})
	if err != nil {
		return nil, err
	}
	defer l2Only.close()
	rdb := withL1.rdb
	gc := gocache.New(&gocache.Options{Redis: rdb, LocalCache: gocache.NewTinyLFU(100_000, time.Minute)})
	seq := 0
	fresh := func(prefix string) []string {
		seq++
		keys := make([]string, size)
		for i := range keys {
			keys[i] = prefix + strconv.Itoa(seq) + ":" + strconv.Itoa(i)
		}
		return keys
	}
	ms := func(f func() error) func() (float64, error) {
		return func() (float64, error) {
			var err error
			ns := sequential(cfg.batches, func(int) {
				if e := f(); e != nil && err == nil {
					err = e
				}
			})
			return ns / 1e6, err
		}
	}
	check := func(m map[string]val, err error) error {
		if err != nil {
			return err
		}
		if len(m) != size {
			return fmt.Errorf("got %d of %d keys", len(m), size)
		}
		return nil
	}

	cold := newRow("GetOrLoadMany", "100 cold keys, Cluster", "ms", "floor: MGET per slot + loader + SET, pipelined", "≤ 2x the floor")
	coldCands := []candidate{
		{"floor: MGET per slot + loader + SET, pipelined", ms(func() error {
			keys := fresh("floor:")
			full := make([]string, size)
			for i, k := range keys {
				full[i] = name + ":" + k
			}
			if _, err := mgetFloor(ctx, rdb, full); err != nil {
				return err
			}
			m, _ := batchLoader(ctx, keys)
			pipe := rdb.Pipeline()
			for i, k := range keys {
				b, err := json.Marshal(m[k])
				if err != nil {
					return err
				}
				env := remote.Encode(nil, driver.Entry{Kind: driver.KindValue, Payload: b, ExpiresAt: time.Now().Add(10 * time.Minute), Version: uint64(i)})
				pipe.Set(ctx, full[i], env, 10*time.Minute)
			}
			_, err := pipe.Exec(ctx)
			return err
		})},
		{"tiercache GetOrLoadMany", ms(func() error {
			return check(withL1.c.GetOrLoadMany(ctx, fresh("tc:"), batchLoader))
		})},
		{"go-redis/cache: 100 x Once", ms(func() error {
			for i, k := range fresh("gc:") {
				var out val
				if err := gc.Once(&gocache.Item{Ctx: ctx, Key: name + ":" + k, Value: &out, TTL: 10 * time.Minute,
					Do: func(*gocache.Item) (any, error) { return mkVal(int64(i)), nil }}); err != nil {
					return err
				}
			}
			return nil
		})},
	}
	if err := interleave(cold, cfg.rounds, coldCands); err != nil {
		return nil, err
	}

	// Warm: cfg.batches sets of 100 keys written through tiercache.
	sets := make([][]string, cfg.batches)
	var all []string
	for i := range sets {
		sets[i] = fresh("warm:")
		if _, err := withL1.c.GetOrLoadMany(ctx, sets[i], batchLoader); err != nil {
			return nil, err
		}
		all = append(all, sets[i]...)
	}
	withL1.l1.Invalidate(all...)
	fullSets := make([][]string, len(sets))
	for i, s := range sets {
		fullSets[i] = make([]string, len(s))
		for j, k := range s {
			fullSets[i][j] = name + ":" + k
		}
	}
	warmBlock := func(f func(i int) error, before func()) func() (float64, error) {
		return func() (float64, error) {
			if before != nil {
				before()
			}
			var err error
			ns := sequential(len(sets), func(i int) {
				if e := f(i); e != nil && err == nil {
					err = e
				}
			})
			return ns / 1e6, err
		}
	}
	warm := newRow("GetOrLoadMany", "100 warm keys (in L2, not in L1), Cluster", "ms", "floor: MGET per slot, pipelined", "≤ 1.3x the floor plus decoding")
	warmCands := []candidate{
		{"floor: MGET per slot, pipelined", warmBlock(func(i int) error {
			_, err := mgetFloor(ctx, rdb, fullSets[i])
			return err
		}, nil)},
		{"MGET per slot + decode", warmBlock(func(i int) error {
			cmds, err := mgetFloor(ctx, rdb, fullSets[i])
			if err != nil {
				return err
			}
			for _, c := range cmds {
				for _, x := range c.Val() {
					s, _ := x.(string)
					en, err := remote.Decode([]byte(s))
					if err != nil {
						return err
					}
					var out val
					if err := json.Unmarshal(en.Payload, &out); err != nil {
						return err
					}
				}
			}
			return nil
		}, nil)},
		{"tiercache GetOrLoadMany, L2 only", warmBlock(func(i int) error {
			return check(l2Only.c.GetOrLoadMany(ctx, sets[i], noBatchLoad))
		}, nil)},
		{"tiercache GetOrLoadMany, with L1 fills", warmBlock(func(i int) error {
			return check(withL1.c.GetOrLoadMany(ctx, sets[i], noBatchLoad))
		}, func() {
			// Setup, not timed: the L1 drops every key, and ristretto
			// applies the drops before the block starts.
			withL1.l1.Invalidate(all...)
			withL1.l1.Wait()
		})},
	}
	if err := interleave(warm, cfg.rounds, warmCands); err != nil {
		return nil, err
	}
	return []*row{cold, warm}, nil
}

// noBatchLoad fails: a warm batch must not call its loader.
func noBatchLoad(_ context.Context, keys []string) (map[string]val, error) {
	return nil, fmt.Errorf("peers: loader called for %d keys of a warm batch", len(keys))
}

var _ tiered.BatchLoader[val] = batchLoader
