package tiered_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// plainBus hides the carrying of a bus: Sets through it write to L2 and
// publish in two round trips.
type plainBus struct{ b *invalidation.Bus }

func (p plainBus) Publish(ctx context.Context, namespace string, keys []string) error {
	return p.b.Publish(ctx, namespace, keys)
}

func (p plainBus) Subscribe(namespace string, invalidate func([]string), flush func()) (driver.Subscription, error) {
	sub, err := p.b.Subscribe(namespace, invalidate, flush)
	if err != nil {
		return nil, err
	}
	return plainSubscription{sub}, nil
}

// plainSubscription hides the subscription's Carry.
type plainSubscription struct{ s driver.Subscription }

func (p plainSubscription) Publish(ctx context.Context, keys []string) error {
	return p.s.Publish(ctx, keys)
}

func (p plainSubscription) Unsubscribe() { p.s.Unsubscribe() }

// BenchmarkSet measures a lone Set (L1, L2, and a bus with the other nodes
// listening) against a raw go-redis SET of the same bytes on the same
// deployment, call by call in one loop: with the invalidation carried in
// the SET's round trip (the default when the bus and L2 share a client)
// and without (SET, then PUBLISH). It reports the median of each and the
// ratio of medians to the raw SET; DESIGN §11 bounds Set/SET at 1.5x.
func BenchmarkSet(b *testing.B) {
	for _, d := range []string{"standalone", "cluster"} {
		for _, n := range []int{2, 16} {
			b.Run(fmt.Sprintf("%s/%d-nodes", d, n), func(b *testing.B) {
				benchSet(b, d, n)
			})
		}
	}
}

func benchSet(b *testing.B, deployment string, n int) {
	ctx := context.Background()
	client := func() redis.UniversalClient {
		if deployment == "cluster" {
			return redistest.Cluster(b)
		}
		return redistest.Standalone(b)
	}
	name := redistest.Name(b)
	newNode := func(plain bool) *tiered.Cache[user] {
		rdb := client()
		bus, err := invalidation.New(rdb, invalidation.WithChannelPrefix(name+":bus"), invalidation.WithShards(3))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { bus.Close() })
		st, err := remote.New(rdb)
		if err != nil {
			b.Fatal(err)
		}
		l1, err := local.New[user]()
		if err != nil {
			b.Fatal(err)
		}
		var tb driver.Bus = bus
		if plain {
			tb = plainBus{bus}
		}
		c, err := tiered.New[user](name, l1, st, tiered.WithInvalidation(tb), tiered.WithRemoteTimeout(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	carried, plain := newNode(false), newNode(true)
	for range n - 2 {
		newNode(false)
	}
	raw := client()
	v := user{ID: "42", Name: "a user of some length"}
	payload := `{"ID":"42","Name":"a user of some length"}` + string(make([]byte, 27))
	calls := []struct {
		name string
		f    func() error
	}{
		{"SET", func() error { return raw.Set(ctx, name+":raw", payload, time.Minute).Err() }},
		{"Set", func() error { return carried.Set(ctx, "k", v) }},
		{"Set-uncarried", func() error { return plain.Set(ctx, "k", v) }},
	}
	for i := range 20 { // connections open, slot map loaded
		for _, c := range calls {
			if err := c.f(); err != nil {
				b.Fatal(c.name, i, err)
			}
		}
	}
	// The order rotates: a call right after a Set shares the machine with
	// the other nodes taking that Set's invalidation.
	took := make([][]time.Duration, len(calls))
	round := 0
	for b.Loop() {
		round++
		for j := range calls {
			i := (j + round) % len(calls)
			c := calls[i]
			t0 := time.Now()
			if err := c.f(); err != nil {
				b.Fatal(err)
			}
			took[i] = append(took[i], time.Since(t0))
		}
	}
	med := make([]float64, len(calls))
	for i, c := range calls {
		slices.Sort(took[i])
		med[i] = float64(took[i][len(took[i])/2].Nanoseconds()) / 1000
		b.ReportMetric(med[i], c.name+"-p50-µs")
		if i > 0 {
			b.ReportMetric(med[i]/med[0], c.name+"/SET")
		}
	}
}
