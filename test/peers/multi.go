package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/tiercache/tiercache/tiered"
)

// stampedeBus gives the nodes of the stampede test a bus, as in production:
// it wakes the waiters on a lease when the holder fills it (both candidates
// get one, so the baseline pays the bus's own traffic too).
const stampedeBus = true

// stampede: nodes x 64 goroutines ask one cold key at once; the loader
// takes 20 ms. Per round and candidate, three keys; the value is the median
// caller latency over them.
func stampede(ctx context.Context, e *env, cfg config) ([]*row, error) {
	const (
		callers  = 64
		perRound = 3
		loadTime = 20 * time.Millisecond
	)
	var rows []*row
	for _, n := range []int{8, 32} {
		r := newRow("Stampede", fmt.Sprintf("%d nodes x %d goroutines, one cold key, 20 ms loader, Cluster: p50", n, callers), "ms",
			"per-node flight only (WithoutLeases)", "within 1.1x of per-node flight; exactly 1 loader call")
		modes := []struct {
			name string
			opts []tiered.Option
		}{
			{"per-node flight only (WithoutLeases)", []tiered.Option{tiered.WithoutLeases()}},
			{"tiercache", nil},
		}
		var cands []candidate
		for _, m := range modes {
			name := e.run + "-stampede-" + strconv.Itoa(n) + "-" + strconv.Itoa(len(cands))
			nodes := make([]*node, 0, n)
			for range n {
				nd, err := e.newNode("cluster", name, nodeOpts{withBus: stampedeBus, l1Entries: 1000, opts: m.opts})
				if err != nil {
					closeAll(nodes)
					return nil, err
				}
				nodes = append(nodes, nd)
			}
			defer closeAll(nodes)
			var calls, keys atomic.Int64
			load := func(_ context.Context, key string) (val, error) {
				calls.Add(1)
				time.Sleep(loadTime)
				return mkVal(1), nil
			}
			seq := 0
			cands = append(cands, candidate{m.name, func() (float64, error) {
				var lat []float64
				var mu sync.Mutex
				var firstErr error
				for range perRound {
					seq++
					keys.Add(1)
					key := "cold-" + strconv.Itoa(seq)
					start := make(chan struct{})
					var wg sync.WaitGroup
					for _, nd := range nodes {
						for range callers {
							wg.Go(func() {
								<-start
								t0 := time.Now()
								_, err := nd.c.GetOrLoad(ctx, key, load)
								d := time.Since(t0)
								mu.Lock()
								lat = append(lat, float64(d.Microseconds())/1000)
								if err != nil && firstErr == nil {
									firstErr = err
								}
								mu.Unlock()
							})
						}
					}
					runtime.Gosched()
					close(start)
					wg.Wait()
				}
				r.note(m.name, fmt.Sprintf("%.2f loader calls/key", float64(calls.Load())/float64(keys.Load())))
				return median(lat), firstErr
			}})
		}
		if err := interleave(r, cfg.rounds, cands); err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// pollEvery is how often an observer of the visibility test reads the key:
// the resolution of the visibility times (plus the timer's slack).
const pollEvery = 50 * time.Microsecond

// writer is one side of the visibility test: n nodes, node 0 writes, the
// others read until they see the write.
type writer struct {
	name  string
	write func(ctx context.Context, v int64) error // on node 0
	read  func(ctx context.Context, node int) (int64, error)
	close func()
}

// writes: node 0 writes a key every other node holds in its local cache; the
// others poll it until they see the new value. For each write it records
// the time from the write's start until the last other node saw the value.
// The write call's duration is measured in blocks of its own, with nobody
// polling, as the raw SET it is compared with.
func writes(ctx context.Context, e *env, cfg config) ([]*row, error) {
	var rows []*row
	for _, n := range []int{2, 16} {
		last := "the other node"
		if n > 2 {
			last = fmt.Sprintf("the last of %d", n-1)
		}
		call := newRow("Writes", fmt.Sprintf("write call, %d nodes, Cluster: p50", n), "µs", "go-redis SET", "≤ 1.5x raw SET")
		vis50 := newRow("Writes", fmt.Sprintf("visible on %s, from the write's start, %d nodes: p50", last, n), "µs", "rueidis client-side caching", "≤ 1.2x rueidis CSC")
		vis99 := newRow("Writes", fmt.Sprintf("visible on %s, %d nodes: p99", last, n), "µs", "rueidis client-side caching", "≤ 1.2x rueidis CSC")
		ws, err := newWriters(ctx, e, n)
		if err != nil {
			return nil, err
		}
		defer func() {
			for _, w := range ws {
				w.close()
			}
		}()
		raw := e.clusterClient()
		defer raw.Close()
		rawKey := e.run + "-rawset"
		var cands []candidate
		seqv := int64(1)
		for _, w := range ws {
			cands = append(cands, candidate{w.name, func() (float64, error) {
				_, vis, err := visibility(ctx, w, n, cfg.writes, &seqv)
				if err != nil {
					return 0, err
				}
				vis50.vals[w.name] = append(vis50.vals[w.name], quantile(vis, 0.5))
				vis99.vals[w.name] = append(vis99.vals[w.name], quantile(vis, 0.99))
				return 0, nil
			}})
			// The write call on its own, as the raw SET is measured: the
			// other nodes listen (and drop their copies) but nobody polls,
			// so the call is not charged with the observers' wake-ups.
			cands = append(cands, candidate{w.name + " (call)", func() (float64, error) {
				var lat []float64
				for range cfg.writes {
					seqv++
					t0 := time.Now()
					if err := w.write(ctx, seqv); err != nil {
						return 0, err
					}
					lat = append(lat, float64(time.Since(t0).Nanoseconds())/1000)
				}
				call.vals[w.name] = append(call.vals[w.name], quantile(lat, 0.5))
				return 0, nil
			}})
		}
		cands = append(cands, candidate{"go-redis SET", func() (float64, error) {
			var lat []float64
			for i := range cfg.writes {
				t0 := time.Now()
				if err := raw.Set(ctx, rawKey, strconv.Itoa(i), time.Minute).Err(); err != nil {
					return 0, err
				}
				lat = append(lat, float64(time.Since(t0).Nanoseconds())/1000)
			}
			call.vals["go-redis SET"] = append(call.vals["go-redis SET"], quantile(lat, 0.5))
			return 0, nil
		}})
		scratch := newRow("", "", "", "", "")
		if err := interleave(scratch, cfg.rounds, cands); err != nil {
			return nil, err
		}
		call.cands = []string{"go-redis SET", "tiercache Set", "rueidis client-side caching"}
		vis50.cands = []string{"rueidis client-side caching", "tiercache Set"}
		vis99.cands = vis50.cands
		rows = append(rows, call, vis50, vis99)
	}
	return rows, nil
}

// visibility makes writes writes through w and returns the write calls'
// durations and the visibility times (µs).
func visibility(ctx context.Context, w *writer, n, writes int, seq *int64) (calls, vis []float64, err error) {
	observers := n - 1
	var (
		expect  atomic.Int64
		seen    = make([]atomic.Int64, observers)
		stop    atomic.Bool
		errOnce sync.Once
		obsErr  error
		wg      sync.WaitGroup
		round   = make([]chan struct{}, observers)
		done    = make(chan int, observers)
	)
	for i := range round {
		round[i] = make(chan struct{}, 1)
	}
	for o := range observers {
		wg.Go(func() {
			for range round[o] {
				want := expect.Load()
				for !stop.Load() {
					v, err := w.read(ctx, o+1)
					if err != nil {
						errOnce.Do(func() { obsErr = err })
						break
					}
					if v == want {
						break
					}
					// Poll, not spin: spinning observers would starve the
					// writer and the Redis servers of the two cores.
					time.Sleep(pollEvery)
				}
				seen[o].Store(time.Now().UnixNano())
				done <- o
			}
		})
	}
	defer func() {
		stop.Store(true)
		for _, c := range round {
			close(c)
		}
		wg.Wait()
	}()
	for range writes {
		*seq++
		v := *seq
		expect.Store(v)
		for _, c := range round {
			c <- struct{}{}
		}
		t0 := time.Now()
		if err := w.write(ctx, v); err != nil {
			return nil, nil, err
		}
		calls = append(calls, float64(time.Since(t0).Nanoseconds())/1000)
		lastSeen := int64(0)
		for range observers {
			o := <-done
			lastSeen = max(lastSeen, seen[o].Load())
		}
		if obsErr != nil {
			return nil, nil, obsErr
		}
		vis = append(vis, float64(lastSeen-t0.UnixNano())/1000)
	}
	slices.Sort(vis)
	return calls, vis, nil
}

func newWriters(ctx context.Context, e *env, n int) ([]*writer, error) {
	name := e.run + "-writes-" + strconv.Itoa(n)
	nodes := make([]*node, 0, n)
	for range n {
		nd, err := e.newNode("cluster", name, nodeOpts{withBus: true, l1Entries: 1000})
		if err != nil {
			closeAll(nodes)
			return nil, err
		}
		nodes = append(nodes, nd)
	}
	tc := &writer{
		name:  "tiercache Set",
		write: func(ctx context.Context, v int64) error { return nodes[0].c.Set(ctx, "k", mkVal(v)) },
		read: func(ctx context.Context, i int) (int64, error) {
			v, _, err := nodes[i].c.Get(ctx, "k")
			return v.ID, err
		},
		close: func() { closeAll(nodes) },
	}
	if err := tc.write(ctx, 0); err != nil {
		tc.close()
		return nil, err
	}
	clients := make([]rueidis.Client, 0, n)
	closeRue := func() {
		for _, c := range clients {
			c.Close()
		}
	}
	for range n {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: e.cluster})
		if err != nil {
			tc.close()
			closeRue()
			return nil, err
		}
		clients = append(clients, c)
	}
	key := name + ":rue"
	rue := &writer{
		name: "rueidis client-side caching",
		write: func(ctx context.Context, v int64) error {
			c := clients[0]
			return c.Do(ctx, c.B().Set().Key(key).Value(strconv.FormatInt(v, 10)).Build()).Error()
		},
		read: func(ctx context.Context, i int) (int64, error) {
			c := clients[i]
			return c.DoCache(ctx, c.B().Get().Key(key).Cache(), time.Minute).AsInt64()
		},
		close: closeRue,
	}
	if err := rue.write(ctx, 0); err != nil {
		tc.close()
		closeRue()
		return nil, err
	}
	return []*writer{tc, rue}, nil
}
