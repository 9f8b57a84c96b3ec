package redistest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestSentinel: the deployment starts with Servers[0] as the primary, a
// failover client reads and writes through it, and after SENTINEL FAILOVER
// every sentinel reports Servers[1], which says it is the primary, and the
// client's writes reach it.
func TestSentinel(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := NewSentinel(t)
	if len(s.Addrs()) != 3 {
		t.Fatalf("Addrs() = %v, want 3 sentinels", s.Addrs())
	}
	addr, err := s.MasterAddr(ctx)
	if err != nil || addr != s.Servers[0].Addr() {
		t.Fatalf("MasterAddr() = %q, %v; want %s", addr, err, s.Servers[0].Addr())
	}
	c := s.Client(t, &redis.FailoverOptions{ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond})
	key := Name(t)
	if err := c.Set(ctx, key, "before", 0).Err(); err != nil {
		t.Fatalf("SET through the failover client: %v", err)
	}
	// The write reached the primary and was replicated.
	if v, err := s.Servers[0].Client(t).Get(ctx, key).Result(); err != nil || v != "before" {
		t.Fatalf("GET on the primary = %q, %v", v, err)
	}
	replica := s.Servers[1].Client(t)
	pollFor(t, ctx, "TestSentinel", "the write to reach the replica", func() error {
		return replica.Get(ctx, key).Err()
	})

	start := time.Now()
	old := s.Failover(t)
	if old != s.Servers[0].Addr() {
		t.Fatalf("Failover() = %q, want the old primary %s", old, s.Servers[0].Addr())
	}
	got := s.WaitFailover(t, old, 20*time.Second)
	reported := time.Since(start)
	if got != s.Servers[1].Addr() {
		t.Fatalf("WaitFailover() = %q, want the replica %s", got, s.Servers[1].Addr())
	}
	if addr, err := s.MasterAddr(ctx); err != nil || addr != got {
		t.Fatalf("MasterAddr() after the failover = %q, %v; want %s", addr, err, got)
	}
	// The failover client follows: its writes land on the new primary.
	pollFor(t, ctx, "TestSentinel", "a write through the failover client to reach the new primary", func() error {
		if err := c.Set(ctx, key, "after", 0).Err(); err != nil {
			return err
		}
		v, err := replica.Get(ctx, key).Result()
		if err == nil && v != "after" {
			err = context.DeadlineExceeded
		}
		return err
	})
	t.Logf("sentinels reported the new primary %v after SENTINEL FAILOVER; writes reached it after %v", reported, time.Since(start))
}

// TestSentinelSwitchover: writes go on through a failover client during a
// Switchover, and the old primary takes none after the promotion (its
// replication offset ends where the new primary's history began).
func TestSentinelSwitchover(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s := NewSentinel(t)
	c := s.Client(t, &redis.FailoverOptions{ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	key := Name(t)
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if c.Incr(ctx, key).Err() == nil {
				n++
			}
		}
	}()
	old := s.Switchover(t, 3*time.Second)
	now := s.WaitFailover(t, old, 20*time.Second)
	offset := func(addr, field string) string {
		rc := redis.NewClient(&redis.Options{Addr: addr})
		defer rc.Close()
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			t.Fatal(err)
		}
		return infoField(info, field)
	}
	oldEnd, _ := strconv.Atoi(offset(old, "master_repl_offset"))
	newBegin, _ := strconv.Atoi(offset(now, "second_repl_offset"))
	if oldEnd != newBegin-1 {
		t.Errorf("the old primary's offset is %d, the new primary's history begins at %d: writes landed on the old one after the promotion", oldEnd, newBegin)
	}
	// Writes resume on the new primary, and none acknowledged was lost.
	pollFor(t, ctx, "TestSentinelSwitchover", "writes on the new primary", func() error {
		return c.Incr(ctx, key).Err()
	})
	close(stop)
	acked := <-done + 1
	nc := redis.NewClient(&redis.Options{Addr: now})
	defer nc.Close()
	got, err := nc.Get(ctx, key).Int()
	if err != nil || got < acked {
		t.Fatalf("the new primary holds %d, %v; %d increments were acknowledged", got, err, acked)
	}
}
