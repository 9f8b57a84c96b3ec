package remote_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// Issue 9 observation 10.
func TestNewNilOption(t *testing.T) {
	if _, err := remote.New(redistest.Standalone(t), nil); !errors.Is(err, remote.ErrInvalidOption) {
		t.Fatalf("New(client, nil) = %v, want ErrInvalidOption", err)
	}
}

func TestUnavailableMarksConnectionErrors(t *testing.T) {
	srv := redistest.NewServer(t)
	s := newStore(t, srv.Client(t))
	ctx := context.Background()
	if _, err := s.Get(ctx, "k"); err != nil {
		t.Fatalf("Get on a live server: %v", err)
	}
	srv.Stop(t)
	_, err := s.Get(ctx, "k")
	var u interface{ Unavailable() bool }
	if !errors.Is(err, remote.ErrUnavailable) || !errors.As(err, &u) || !u.Unavailable() {
		t.Fatalf("Get on a stopped server = %v; want it marked unavailable", err)
	}
}

func TestUnavailableNotForServerReplies(t *testing.T) {
	rdb := redistest.Standalone(t)
	s := newStore(t, rdb)
	ctx := context.Background()
	key := redistest.Name(t) + ":list"
	if err := rdb.LPush(ctx, key, "x").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Del(context.Background(), key) })
	// WRONGTYPE proves the server is up.
	if _, err := s.Get(ctx, key); err == nil || errors.Is(err, remote.ErrUnavailable) {
		t.Fatalf("GET of a list = %v; want an error not marked unavailable", err)
	}
	// So does the caller's own deadline: not marked.
	past, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	if _, err := s.Get(past, "k"); errors.Is(err, remote.ErrUnavailable) {
		t.Fatalf("Get with an expired ctx = %v; want it not marked unavailable", err)
	}
	// And validation.
	if _, err := s.Get(ctx, string(make([]byte, 5000))); !errors.Is(err, remote.ErrKeyTooLong) || errors.Is(err, remote.ErrUnavailable) {
		t.Fatalf("Get of a long key = %v", err)
	}
}

// Issue 9 observation 11 (L2 part) and issue 20 observation 4: a wrong
// password and a missing ACL permission fail New with an error naming the
// problem (the credentials; NOPERM and the commands), not marked
// unavailable; a permission revoked after New fails the call it refuses
// with NOPERM and the command, never "credentials".
func TestPermissionErrorsAreLoud(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	name := redistest.Name(t)
	user := name + "-acl"
	if err := rdb.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "~"+name+":*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Do(context.Background(), "ACL", "DELUSER", user) })

	wrong := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t), Username: user, Password: "wrong"})
	defer wrong.Close()
	_, err := remote.New(wrong)
	if !errors.Is(err, remote.ErrPermission) || errors.Is(err, remote.ErrUnavailable) || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("New with a wrong password = %v; want ErrPermission saying credentials, not unavailable", err)
	}

	limited := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t), Username: user, Password: "pw"})
	defer limited.Close()
	s := newStore(t, limited, remote.WithProbeKey(name+":probe"))
	// Everything but scripting, from now on: the conditional fill needs EVALSHA.
	if err := rdb.Do(ctx, "ACL", "SETUSER", user, "-@scripting").Err(); err != nil {
		t.Fatal(err)
	}
	_, err = s.CompareAndSwap(ctx, name+":k", 1, driver.Entry{Kind: driver.KindValue, ExpiresAt: time.Now().Add(time.Minute)})
	if !errors.Is(err, remote.ErrPermission) || errors.Is(err, remote.ErrUnavailable) {
		t.Fatalf("CompareAndSwap without +@scripting = %v; want ErrPermission", err)
	}
	for _, want := range []string{"NOPERM", "EVALSHA"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "credentials") {
		t.Fatalf("error %q speaks of credentials; the password was right", err)
	}
	if _, err := remote.New(limited, remote.WithProbeKey(name+":probe")); !errors.Is(err, remote.ErrPermission) ||
		!strings.Contains(err.Error(), "EVAL, EVALSHA") {
		t.Fatalf("New without +@scripting = %v; want ErrPermission naming EVAL, EVALSHA", err)
	}
}

// Issue 20 observation 4: with scripting revoked after New, a lease is
// still released (by GET and DEL), so other nodes need not wait for its
// TTL; another version is left alone.
func TestReleaseWithoutScripting(t *testing.T) {
	rdb := redistest.Standalone(t)
	ctx := context.Background()
	name := redistest.Name(t)
	user := name + "-acl"
	if err := rdb.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "~"+name+":*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Do(context.Background(), "ACL", "DELUSER", user) })
	limited := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t), Username: user, Password: "pw"})
	defer limited.Close()
	s := newStore(t, limited, remote.WithProbeKey(name+":probe"))
	key := name + ":k"
	if _, won, err := s.Acquire(ctx, key, 7, time.Now().Add(time.Minute)); err != nil || !won {
		t.Fatalf("Acquire = %v, %v", won, err)
	}
	if err := rdb.Do(ctx, "ACL", "SETUSER", user, "-@scripting").Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndDelete(ctx, key, 8); err != nil || ok {
		t.Fatalf("CompareAndDelete of another version = %v, %v; want false, nil", ok, err)
	}
	if n := rdb.Exists(ctx, key).Val(); n != 1 {
		t.Fatalf("the lease was deleted by a release of another version")
	}
	if ok, err := s.CompareAndDelete(ctx, key, 7); err != nil || !ok {
		t.Fatalf("CompareAndDelete of the lease without scripting = %v, %v; want true, nil", ok, err)
	}
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Fatalf("the lease is still there")
	}
	if got := s.Stats().UnscriptedReleases; got != 1 {
		t.Fatalf("UnscriptedReleases = %d, want 1", got)
	}
}

func TestShard(t *testing.T) {
	cc := redistest.Cluster(t)
	s := newStore(t, cc)
	ctx := context.Background()
	seen := map[string]bool{}
	for i := range 64 {
		key := redistest.Name(t) + ":" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		shard := s.Shard(key)
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if shard != m.Options().Addr {
			t.Fatalf("Shard(%q) = %q, want %q", key, shard, m.Options().Addr)
		}
		seen[shard] = true
	}
	if len(seen) != 3 {
		t.Fatalf("64 keys on %d shards, want 3", len(seen))
	}
	if got := newStore(t, redistest.Standalone(t)).Shard("k"); got != "" {
		t.Fatalf("standalone Shard = %q, want \"\"", got)
	}
}

// Issue 20 observation 1: with cluster-require-full-coverage yes (Redis'
// default), a Cluster one of whose primaries failed answers CLUSTERDOWN
// for every key, on the primaries that are up too. Such a refusal is
// marked unavailable and answered (the key's node is up: tiered must not
// open that shard's breaker), as is a call that ran out of time while
// go-redis retried it; the dead primary's own keys fail to connect and are
// marked unavailable only.
func TestClusterDownIsAnswered(t *testing.T) {
	pc := redistest.NewCluster(t, 2, 0, "--cluster-require-full-coverage", "yes")
	s := newStore(t, pc.Client(t, nil))
	ctx := context.Background()
	name := redistest.Name(t)
	var live, dead string
	for i := 0; live == "" || dead == ""; i++ {
		k := fmt.Sprint(name, ":k", i)
		if s.Shard(k) == pc.Primaries[0].Addr() {
			dead = k
		} else {
			live = k
		}
	}
	pc.Primaries[0].Stop(t) // SIGKILL; no replica: the Cluster stays down
	type marks interface {
		Unavailable() bool
		Answered() bool
	}
	answered := func(err error) bool {
		var m marks
		return errors.As(err, &m) && m.Answered()
	}
	// The live primary refuses once it has marked the dead one failed
	// (cluster-node-timeout, then gossip).
	deadline := time.Now().Add(5 * redistest.ClusterNodeTimeout)
	var err error
	for {
		_, err = s.Get(ctx, live)
		if err != nil && strings.Contains(err.Error(), "CLUSTERDOWN") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get of a key on the live primary after %v: %v; want CLUSTERDOWN", 5*redistest.ClusterNodeTimeout, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if !errors.Is(err, remote.ErrUnavailable) || !answered(err) {
		t.Fatalf("CLUSTERDOWN from a live primary = %v; want unavailable and answered", err)
	}
	// A short deadline runs out while go-redis retries the refusal.
	var timedOut int
	for range 20 {
		short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		_, err := s.Get(short, live)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			timedOut++
			if !answered(err) || errors.Is(err, remote.ErrUnavailable) {
				t.Fatalf("a call that ran out of time during the refusal = %v; want answered, not unavailable", err)
			}
		} else if !answered(err) {
			t.Fatalf("Get during the refusal = %v; want a CLUSTERDOWN marked answered", err)
		}
	}
	if timedOut == 0 {
		t.Fatal("no call with a 5 ms deadline ran out of time during the refusal; want some")
	}
	if _, err := s.Get(ctx, dead); !errors.Is(err, remote.ErrUnavailable) || answered(err) {
		t.Fatalf("Get of a key on the dead primary = %v; want unavailable, not answered", err)
	}
}
