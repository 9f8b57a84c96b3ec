package remote_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered/driver"
)

// Issue 22 item 4: the harness' Redis 7.0 has SET NX GET but neither SET
// IFEQ nor DELEX nor DELIFEQ; the probe says so, and writes nothing.
func TestProbeOnRedis70(t *testing.T) {
	deployments(t, func(t *testing.T, rdb remote.Client) {
		ctx := context.Background()
		name := redistest.Name(t)
		s := newStore(t, rdb, remote.WithProbeKey(name+":probe"))
		want := remote.Capabilities{Probed: true, KeyAllowed: true, SetNXGet: true}
		if got := s.Capabilities(); got != want {
			t.Fatalf("Capabilities() = %+v, want %+v", got, want)
		}
		if got := s.Capabilities().Swap(); got != "EVALSHA" {
			t.Fatalf("Swap() = %q, want the script (EVALSHA)", got)
		}
		if got := s.Capabilities().Release(); got != "EVALSHA" {
			t.Fatalf("Release() = %q, want the script (EVALSHA)", got)
		}
		var (
			mu    sync.Mutex
			found []string
		)
		switch c := rdb.(type) {
		case *redis.ClusterClient:
			err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
				keys, err := n.Keys(ctx, name+"*").Result()
				mu.Lock()
				defer mu.Unlock()
				found = append(found, keys...)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		case *redis.Client:
			found = c.Keys(ctx, name+"*").Val()
		}
		if len(found) != 0 {
			t.Fatalf("the probe left keys: %q", found)
		}
	})
}

// cmdLog records the name of every command a client sends.
type cmdLog struct {
	mu    sync.Mutex
	names []string
}

func (l *cmdLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *cmdLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.add(cmd)
		return next(ctx, cmd)
	}
}

func (l *cmdLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			l.add(c)
		}
		return next(ctx, cmds)
	}
}

func (l *cmdLog) add(cmd redis.Cmder) {
	switch strings.ToUpper(cmd.Name()) {
	case "HELLO", "CLIENT", "AUTH", "SELECT":
		return // a new connection's set-up
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, strings.ToUpper(cmd.Name()))
}

func (l *cmdLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.names
	l.names = nil
	return out
}

// Issue 22 item 4: on Redis 7.0 the fill and the release use the scripts
// (the fallback): one EVALSHA each on the wire; New's probe is one
// pipeline.
func TestCommandsPerFill(t *testing.T) {
	ctx := context.Background()
	name := redistest.Name(t)
	rdb := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	log := &cmdLog{}
	rdb.AddHook(log)
	s := newStore(t, rdb, remote.WithProbeKey(name+":probe"))
	probe := log.take()
	t.Logf("New's probe: %d commands in one pipeline: %v", len(probe), probe)
	key := name + ":k"
	exp := time.Now().Add(time.Minute)
	if _, won, err := s.Acquire(ctx, key, 1, exp); err != nil || !won {
		t.Fatalf("Acquire = %v, %v", won, err)
	}
	if got := log.take(); strings.Join(got, " ") != "SET" {
		t.Fatalf("Acquire sent %v, want SET (NX GET)", got)
	}
	// The first EVALSHA of a script the server has not seen falls back to
	// EVAL once; count a fill with the script cached.
	if _, err := s.CompareAndSwap(ctx, key, 1, driver.Entry{Kind: driver.KindLease, ExpiresAt: exp, Version: 1}); err != nil {
		t.Fatal(err)
	}
	log.take()
	ok, err := s.CompareAndSwap(ctx, key, 1, driver.Entry{Kind: driver.KindValue, ExpiresAt: exp, Version: 2, Payload: []byte(`"v"`)})
	if err != nil || !ok {
		t.Fatalf("fill = %v, %v", ok, err)
	}
	fill := log.take()
	if strings.Join(fill, " ") != "EVALSHA" {
		t.Fatalf("a fill sent %v, want EVALSHA (the script)", fill)
	}
	if _, won, err := s.Acquire(ctx, name+":k2", 3, exp); err != nil || !won {
		t.Fatalf("Acquire = %v, %v", won, err)
	}
	if _, err := s.CompareAndDelete(ctx, name+":k2", 3); err != nil {
		t.Fatal(err)
	}
	log.take()
	if _, won, err := s.Acquire(ctx, name+":k2", 4, exp); err != nil || !won {
		t.Fatalf("Acquire = %v, %v", won, err)
	}
	log.take()
	if ok, err := s.CompareAndDelete(ctx, name+":k2", 4); err != nil || !ok {
		t.Fatalf("release = %v, %v", ok, err)
	}
	if got := log.take(); strings.Join(got, " ") != "EVALSHA" {
		t.Fatalf("a release sent %v, want EVALSHA (the script)", got)
	}
	t.Logf("lease + fill: SET, EVALSHA (2 commands, 2 round trips); release: EVALSHA")
}

// New must not keep an application from starting when Redis is down or
// frozen: the probe gets no answer, New returns a store on the scripts,
// within the start timeout.
func TestProbeWithoutAnswer(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		t.Cleanup(func() { rdb.Close() })
		s := newStore(t, rdb)
		if got := s.Capabilities(); got.Probed || got.Swap() != "EVALSHA" {
			t.Fatalf("Capabilities() = %+v (Swap %s), want not probed, scripts", got, got.Swap())
		}
	})
	t.Run("frozen", func(t *testing.T) {
		srv := redistest.NewServer(t)
		rdb := srv.Client(t)
		srv.Pause(t)
		t.Cleanup(func() { srv.Resume(t) })
		start := time.Now()
		s := newStore(t, rdb, remote.WithStartTimeout(300*time.Millisecond))
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("New with Redis frozen took %v; want about the 300ms start timeout", took)
		}
		if s.Capabilities().Probed {
			t.Fatalf("Capabilities().Probed with Redis frozen")
		}
	})
}

func TestProbeOptions(t *testing.T) {
	rdb := redistest.Standalone(t)
	for _, o := range []remote.Option{remote.WithProbeKey(""), remote.WithStartTimeout(0), remote.WithStartTimeout(-time.Second)} {
		if _, err := remote.New(rdb, o); !errors.Is(err, remote.ErrInvalidOption) {
			t.Errorf("New with a bad probe option = %v, want ErrInvalidOption", err)
		}
	}
}

// cmdArgs records every command's arguments a client sends.
type cmdArgs struct {
	cmdLog
	mu   sync.Mutex
	args [][]any
}

func (l *cmdArgs) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch strings.ToUpper(cmd.Name()) {
		case "HELLO", "CLIENT", "AUTH", "SELECT":
		default:
			l.mu.Lock()
			l.args = append(l.args, cmd.Args())
			l.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (l *cmdArgs) take() [][]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.args
	l.args = nil
	return out
}

// Issue 22 item 4: what the native path can show on Redis 7.0, which has
// no SET IFEQ nor DELEX: it reads first and sends nothing more when the
// key holds another version; otherwise it sends SET IFEQ (DELEX IFEQ) with
// the exact bytes it read, which 7.0 refuses as an error (never a false
// success), and the key is left as it was.
func TestNativeCASOnRedis70(t *testing.T) {
	ctx := context.Background()
	name := redistest.Name(t)
	rdb := redis.NewClient(&redis.Options{Addr: redistest.StandaloneAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	log := &cmdArgs{}
	rdb.AddHook(log)
	s := newStore(t, rdb, remote.WithProbeKey(name+":probe"))
	remote.ForceNativeCAS(s)
	key := name + ":k"
	exp := time.Now().Add(time.Minute)
	if _, won, err := s.Acquire(ctx, key, 5, exp); err != nil || !won {
		t.Fatalf("Acquire = %v, %v", won, err)
	}
	lease, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	log.take()
	val := driver.Entry{Kind: driver.KindValue, ExpiresAt: exp, Version: 6, Payload: []byte(`"v"`)}
	if ok, err := s.CompareAndSwap(ctx, key, 4, val); err != nil || ok {
		t.Fatalf("native CompareAndSwap of another version = %v, %v; want false, nil", ok, err)
	}
	if got := log.take(); len(got) != 1 || strings.ToUpper(got[0][0].(string)) != "GET" {
		t.Fatalf("native CompareAndSwap of another version sent %v; want one GET", got)
	}
	_, err = s.CompareAndSwap(ctx, key, 5, val)
	if err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("native CompareAndSwap on Redis 7.0 = %v; want Redis' syntax error for IFEQ", err)
	}
	got := log.take()
	if len(got) != 2 {
		t.Fatalf("native CompareAndSwap sent %v; want GET, SET IFEQ", got)
	}
	set := got[1]
	if len(set) != 7 || strings.ToUpper(set[0].(string)) != "SET" || set[1] != key || set[3] != "IFEQ" ||
		string(set[4].([]byte)) != string(lease) || set[5] != "PX" {
		t.Fatalf("native fill sent %q; want SET key value IFEQ <the lease's bytes> PX ms", set)
	}
	if _, err := s.CompareAndDelete(ctx, key, 5); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unknown command") {
		t.Fatalf("native CompareAndDelete on Redis 7.0 = %v; want Redis' unknown command DELEX", err)
	}
	if got := log.take(); len(got) != 2 || strings.ToUpper(got[1][0].(string)) != "DELEX" || got[1][2] != "IFEQ" ||
		string(got[1][3].([]byte)) != string(lease) {
		t.Fatalf("native release sent %q; want GET, DELEX key IFEQ <the lease's bytes>", got)
	}
	if now, err := rdb.Get(ctx, key).Bytes(); err != nil || string(now) != string(lease) {
		t.Fatalf("the key holds %q, %v after refused native calls; want the lease unchanged", now, err)
	}
}
