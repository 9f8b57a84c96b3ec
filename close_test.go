package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
	"go.uber.org/goleak"
)

// closeBound is what the Close docs promise (tiered.Cache.Close,
// invalidation.Bus.Close, Group.Close): Close returns within it whatever
// Redis does.
const closeBound = time.Second

// connCounter is a go-redis Dialer that keeps count of the connections it
// opened that are not closed yet: real TCP connections to the real servers,
// observed where the client opens and closes them.
type connCounter struct {
	mu   sync.Mutex
	open map[*countedConn]string // → remote address
}

func newConnCounter() *connCounter { return &connCounter{open: make(map[*countedConn]string)} }

func (cc *connCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	w := &countedConn{Conn: c, cc: cc}
	cc.mu.Lock()
	cc.open[w] = addr
	cc.mu.Unlock()
	return w, nil
}

// openConns returns the addresses of the connections still open.
func (cc *connCounter) openConns() []string {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var out []string
	for _, a := range cc.open {
		out = append(out, a)
	}
	return out
}

type countedConn struct {
	net.Conn
	cc   *connCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.cc.mu.Lock()
		delete(c.cc.open, c)
		c.cc.mu.Unlock()
	})
	return c.Conn.Close()
}

// pubsubConns counts a client's pub/sub connections.
type pubsubConns struct{ dialled, open uint32 }

// frozenDeployment is a private Redis deployment whose every server can be
// frozen (SIGSTOP) and thawed.
type frozenDeployment struct {
	servers []*redistest.Server
	// client returns a client dialling through cc, and a function
	// returning its pub/sub connections: dialled so far, and open now
	// (go-redis tracks one once it is initialised).
	client func(cc *connCounter) (tiercache.Client, func() pubsubConns)
}

func (d frozenDeployment) freeze(t *testing.T) {
	for _, s := range d.servers {
		s.Pause(t)
	}
}

func (d frozenDeployment) thaw(t *testing.T) {
	for _, s := range d.servers {
		s.Resume(t)
	}
}

// TestCloseUnderFrozenRedis (issue 20, item 2): with every Redis server
// frozen (SIGSTOP: connections stay open, nothing answers), Close of a bus,
// and of a Group (its cache and its bus) while 16 goroutines call the cache,
// returns within closeBound; once it returned and the client is closed, no
// connection the client opened for tiercache is left open and no goroutine
// is left running. The client has ContextTimeoutEnabled, as the docs
// require.
func TestCloseUnderFrozenRedis(t *testing.T) {
	deployments := []struct {
		name  string
		setup func(t *testing.T) frozenDeployment
	}{
		{"standalone", func(t *testing.T) frozenDeployment {
			s := redistest.NewServer(t)
			return frozenDeployment{servers: []*redistest.Server{s}, client: func(cc *connCounter) (tiercache.Client, func() pubsubConns) {
				c := redis.NewClient(&redis.Options{Addr: s.Addr(), Dialer: cc.dial, ContextTimeoutEnabled: true})
				return c, func() pubsubConns {
					st := c.PoolStats().PubSubStats
					return pubsubConns{st.Created, st.Active}
				}
			}}
		}},
		{"cluster", func(t *testing.T) frozenDeployment {
			pc := redistest.NewCluster(t, 3, 0)
			return frozenDeployment{servers: pc.Primaries, client: func(cc *connCounter) (tiercache.Client, func() pubsubConns) {
				c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: pc.Addrs(), Dialer: cc.dial, ContextTimeoutEnabled: true})
				var mu sync.Mutex
				var nodes []*redis.Client
				c.OnNewNode(func(n *redis.Client) {
					mu.Lock()
					nodes = append(nodes, n)
					mu.Unlock()
				})
				pubsub := func() pubsubConns {
					mu.Lock()
					defer mu.Unlock()
					var n pubsubConns
					for _, nc := range nodes {
						st := nc.PoolStats().PubSubStats
						n.dialled += st.Created
						n.open += st.Active
					}
					return n
				}
				// Wait until the slot map is loaded: the test is about
				// Close, not about a cold client.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for c.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }) != nil {
					if ctx.Err() != nil {
						t.Fatal("cluster client not ready")
					}
				}
				return c, pubsub
			}}
		}},
	}
	for _, dep := range deployments {
		t.Run(dep.name, func(t *testing.T) {
			d := dep.setup(t)
			for _, withCache := range []bool{false, true} {
				what := "bus"
				if withCache {
					what = "group with 16 callers"
				}
				t.Run(what, func(t *testing.T) {
					closeFrozen(t, d, withCache)
				})
			}
		})
	}
}

func closeFrozen(t *testing.T, d frozenDeployment, withCache bool) {
	prefix := redistest.Name(t)
	busOpts := []invalidation.Option{
		invalidation.WithChannelPrefix(prefix),
		invalidation.WithHeartbeatInterval(100 * time.Millisecond),
	}
	// A throwaway client and bus first, so that go-redis's process-wide
	// goroutines (if any) exist before the snapshot.
	warm, _ := d.client(newConnCounter())
	if wb, err := invalidation.New(warm, busOpts...); err == nil {
		_ = wb.Close()
	}
	_ = warm.(interface{ Close() error }).Close()
	ignore := goleak.IgnoreCurrent()

	cc := newConnCounter()
	client, pubsub := d.client(cc)
	closeClient := sync.OnceFunc(func() { _ = client.(interface{ Close() error }).Close() })
	t.Cleanup(closeClient)
	ctx := ctxT(t)

	var (
		bus     *invalidation.Bus
		g       *tiercache.Group
		cache   *tiered.Cache[string]
		callers sync.WaitGroup
		calls   atomic.Int64
		stop    = make(chan struct{})
	)
	if withCache {
		var err error
		g, err = tiercache.NewGroup(client, tiercache.WithBusOptions(busOpts...))
		if err != nil {
			t.Fatal(err)
		}
		bus = g.Bus()
		// A small L1: the bus, unhealthy, flushes it every D/2 (160 ms
		// here), which under the race detector costs tens of ms per flush
		// for the default size; this test is about Redis, not about that.
		cache, err = tiercache.New[string](g, prefix+"-c", tiercache.WithLocal(local.WithMaxEntries(1000)))
		if err != nil {
			t.Fatal(err)
		}
		load := func(_ context.Context, key string) (string, error) { return "v-" + key, nil }
		for i := range 16 {
			callers.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					calls.Add(1)
					key := fmt.Sprint("k", i, "-", n%50)
					var err error
					switch n % 3 {
					case 0:
						_, err = cache.GetOrLoad(ctx, key, load)
					case 1:
						err = cache.Set(ctx, key, "x")
					case 2:
						err = cache.Delete(ctx, key)
					}
					if errors.Is(err, tiered.ErrClosed) {
						return
					}
				}
			})
		}
	} else {
		var err error
		bus, err = invalidation.New(client, busOpts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(ctx, "ns", []string{"a", "b"}); err != nil {
			t.Fatal(err)
		}
	}
	stopCallers := sync.OnceFunc(func() {
		close(stop)
		callers.Wait()
	})
	defer stopCallers()

	d.freeze(t)
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			d.thaw(t)
		}
	}
	defer thaw()
	// Let the freeze bite: the bus notices that its announcements do not
	// come back and renews its subscription: go-redis has dialled the new
	// connection and waits for the frozen server's answer to HELLO. The
	// callers have calls in flight.
	atFreeze, dialsAtFreeze := calls.Load(), pubsub().dialled
	eventually(t, "the bus turning unhealthy and subscribing again", func() bool {
		return bus.Stats().Unhealthy > 0 && pubsub().dialled > dialsAtFreeze && (!withCache || calls.Load() >= atFreeze+32)
	})

	start := time.Now()
	if withCache {
		// The cache first, then the Group (its bus): each within the
		// bound, and both together too.
		if err := cache.Close(); err != nil {
			t.Errorf("Cache.Close: %v", err)
		}
		took := time.Since(start)
		t.Logf("Cache.Close with Redis frozen took %v", took)
		if took > closeBound {
			t.Errorf("Cache.Close with Redis frozen took %v, want <= %v", took, closeBound)
		}
		if err := g.Close(); err != nil {
			t.Errorf("Group.Close: %v", err)
		}
	} else {
		if err := bus.Close(); err != nil {
			t.Errorf("Bus.Close: %v", err)
		}
	}
	took := time.Since(start)
	t.Logf("Close with Redis frozen took %v", took)
	if took > closeBound {
		t.Errorf("Close with Redis frozen took %v, want <= %v", took, closeBound)
	}
	// The bus's subscriptions are closed: none is open, and none is being
	// initialised (Close waited for those).
	if n := pubsub().open; n > 0 {
		t.Errorf("%d pub/sub connections open once Close returned", n)
	}
	stopCallers()
	closeClient()
	if open := cc.openConns(); len(open) > 0 {
		t.Errorf("%d connections still open once Close returned and the client was closed: %v", len(open), open)
	}
	goleak.VerifyNone(t, ignore)
}
