package loadtest_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// wireCounter is a go-redis hook counting what a node's client sends: the
// commands, and the round trips (a single command is one, a pipeline is one
// per node). On a Cluster it sits on every node client (ClusterClient.OnNewNode),
// where a pipeline is split per node and carried writes go directly.
// Connection and topology commands (HELLO, CLIENT, CLUSTER, PING, COMMAND,
// INFO) are counted apart, as are round trips of nothing but PUBLISH or
// SPUBLISH (the invalidation bus's announcements and heartbeats; the
// hot-key test runs no bus, so they stay 0 there).
type wireCounter struct {
	cmds, trips   atomic.Int64 // the cache's own traffic
	busCmds       atomic.Int64 // publish-only round trips' commands
	topologyCmds  atomic.Int64 // connection and topology commands
	scriptRetries atomic.Int64 // EVALSHA answered NOSCRIPT (then sent again as EVAL or after SCRIPT LOAD)
}

func (w *wireCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w *wireCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			w.scriptRetries.Add(1)
		}
		w.add([]redis.Cmder{cmd})
		return err
	}
}

func (w *wireCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		w.add(cmds)
		return err
	}
}

// add counts one round trip carrying cmds.
func (w *wireCounter) add(cmds []redis.Cmder) {
	var n, topology int64
	onlyBus := true
	for _, c := range cmds {
		switch strings.ToLower(fmt.Sprint(c.Args()[0])) {
		case "hello", "client", "cluster", "ping", "command", "info":
			topology++
			continue
		case "publish", "spublish":
		default:
			onlyBus = false
		}
		n++
	}
	w.topologyCmds.Add(topology)
	switch {
	case n == 0:
	case onlyBus:
		w.busCmds.Add(n)
	default:
		w.cmds.Add(n)
		w.trips.Add(1)
	}
}

// wireCounts is a snapshot of wireCounters.
type wireCounts struct{ cmds, trips, bus, topology, scriptRetries int64 }

func (w *wireCounter) snapshot() wireCounts {
	return wireCounts{w.cmds.Load(), w.trips.Load(), w.busCmds.Load(), w.topologyCmds.Load(), w.scriptRetries.Load()}
}

func (a wireCounts) sub(b wireCounts) wireCounts {
	return wireCounts{a.cmds - b.cmds, a.trips - b.trips, a.bus - b.bus, a.topology - b.topology, a.scriptRetries - b.scriptRetries}
}

func (a wireCounts) add(b wireCounts) wireCounts {
	return wireCounts{a.cmds + b.cmds, a.trips + b.trips, a.bus + b.bus, a.topology + b.topology, a.scriptRetries + b.scriptRetries}
}

// countedClient returns a client of the deployment with w on it, closed
// when the test ends. On the Cluster the hook is attached before the client
// has created any node client.
func countedClient(tb testing.TB, dep string, w *wireCounter) remote.Client {
	tb.Helper()
	if dep == "cluster" {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: redistest.ClusterAddrs(tb)})
		c.OnNewNode(func(n *redis.Client) { n.AddHook(w) })
		tb.Cleanup(func() { _ = c.Close() })
		return c
	}
	c := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(tb)})
	c.AddHook(w)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// serverCounters is what the servers (the Cluster's primaries) report.
type serverCounters struct {
	commands int64   // total_commands_processed: counts the commands a script runs inside it
	cpu      float64 // used_cpu_sys + used_cpu_user, seconds
}

// servers returns the sum of the counters over the standalone server or
// the Cluster's primaries.
func servers(tb testing.TB, client remote.Client) serverCounters {
	tb.Helper()
	ctx := context.Background()
	parse := func(c *redis.Client) (serverCounters, error) {
		var s serverCounters
		info, err := c.Info(ctx, "stats", "cpu").Result()
		if err != nil {
			return s, err
		}
		var seen int
		for line := range strings.SplitSeq(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			switch k {
			case "total_commands_processed":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return s, err
				}
				s.commands = n
				seen++
			case "used_cpu_sys", "used_cpu_user":
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return s, err
				}
				s.cpu += f
				seen++
			}
		}
		if seen != 3 {
			return s, fmt.Errorf("INFO stats cpu of %s lacks total_commands_processed or used_cpu_sys/user", c.Options().Addr)
		}
		return s, nil
	}
	switch c := client.(type) {
	case *redis.Client:
		s, err := parse(c)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	case *redis.ClusterClient:
		var cmds atomic.Int64
		var cpuMicros atomic.Int64
		err := c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
			s, err := parse(m)
			cmds.Add(s.commands)
			cpuMicros.Add(int64(s.cpu * 1e6))
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		return serverCounters{commands: cmds.Load(), cpu: float64(cpuMicros.Load()) / 1e6}
	}
	tb.Fatalf("unknown client %T", client)
	return serverCounters{}
}
