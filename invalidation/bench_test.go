package invalidation

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// arrival is a key seen by a bus's invalidate callback, and when.
type arrival struct {
	key string
	at  time.Time
}

// BenchmarkInvalidationLag measures, over b.N sequential publishes (run it
// with -benchtime=10000x or more), the time from Publish returning on bus A
// to buses B and C both having called their invalidate callback for the
// key, on loopback. It reports the 50th and 99th percentiles and the
// maximum, plus the same from the moment Publish was called.
//
//	go test -run '^$' -bench InvalidationLag -benchtime 20000x ./invalidation/
func BenchmarkInvalidationLag(b *testing.B) {
	for _, tr := range transports()[:2] {
		b.Run(tr.name, func(b *testing.B) {
			ctx := context.Background()
			opts := append(slices.Clone(tr.opts), WithChannelPrefix(uniqueName(b)))
			a := newBus(b, tr.client(b), opts...)
			var sinks [2]chan arrival
			for i := range sinks {
				bus := newBus(b, tr.client(b), opts...)
				sink := make(chan arrival, 16)
				sinks[i] = sink
				if _, err := bus.Subscribe("bench", func(keys []string) {
					now := time.Now()
					for _, k := range keys {
						sink <- arrival{k, now}
					}
				}, func() {}); err != nil {
					b.Fatal(err)
				}
			}
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = "k" + strconv.Itoa(i)
			}
			afterReturn := make([]time.Duration, 0, b.N)
			afterCall := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				called := time.Now()
				if err := a.Publish(ctx, "bench", keys[i:i+1]); err != nil {
					b.Fatal(err)
				}
				returned := time.Now()
				var last time.Time
				for _, sink := range sinks {
					ar := <-sink
					if ar.key != keys[i] {
						b.Fatalf("got key %q, want %q", ar.key, keys[i])
					}
					if ar.at.After(last) {
						last = ar.at
					}
				}
				afterReturn = append(afterReturn, max(last.Sub(returned), 0))
				afterCall = append(afterCall, last.Sub(called))
			}
			b.StopTimer()
			slices.Sort(afterReturn)
			slices.Sort(afterCall)
			b.ReportMetric(us(quantile(afterReturn, 0.50)), "p50-µs")
			b.ReportMetric(us(quantile(afterReturn, 0.99)), "p99-µs")
			b.ReportMetric(us(afterReturn[len(afterReturn)-1]), "max-µs")
			b.ReportMetric(us(quantile(afterCall, 0.50)), "p50-from-call-µs")
			b.ReportMetric(us(quantile(afterCall, 0.99)), "p99-from-call-µs")
		})
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(q*float64(len(sorted))), len(sorted)-1)]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// BenchmarkPublishApply measures how many keys per second bus A can publish
// and bus B apply (invalidate callback returned), with many writers at once
// (parallel: batching packs concurrent writes into shared messages) and
// with one writer (sequential: one message per key, each waiting for the
// previous). Each op is one single-key Publish; msgs/s counts the messages
// Redis accepted.
//
//	go test -run '^$' -bench PublishApply -benchtime 3s ./invalidation/
func BenchmarkPublishApply(b *testing.B) {
	for _, tr := range transports()[:2] {
		for _, mode := range []string{"parallel", "sequential"} {
			b.Run(tr.name+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				opts := append(slices.Clone(tr.opts), WithChannelPrefix(uniqueName(b)))
				a := newBus(b, tr.client(b), opts...)
				rx := newBus(b, tr.client(b), opts...)
				var applied atomic.Int64
				done := make(chan struct{})
				target := int64(b.N)
				if _, err := rx.Subscribe("bench", func(keys []string) {
					if applied.Add(int64(len(keys))) == target {
						close(done)
					}
				}, func() {}); err != nil {
					b.Fatal(err)
				}
				var next atomic.Int64
				publish := func() {
					k := "k" + strconv.FormatInt(next.Add(1), 10)
					if err := a.Publish(ctx, "bench", []string{k}); err != nil {
						b.Error(err)
					}
				}
				sent0 := a.Stats().MessagesSent
				b.ResetTimer()
				start := time.Now()
				if mode == "parallel" {
					b.SetParallelism(16)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							publish()
						}
					})
				} else {
					for range b.N {
						publish()
					}
				}
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					b.Fatalf("B applied %d of %d keys", applied.Load(), b.N)
				}
				elapsed := time.Since(start)
				b.StopTimer()
				msgs := a.Stats().MessagesSent - sent0
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "keys/s")
				b.ReportMetric(float64(msgs)/elapsed.Seconds(), "msgs/s")
				b.ReportMetric(float64(b.N)/float64(max(msgs, 1)), "keys/msg")
			})
		}
	}
}
