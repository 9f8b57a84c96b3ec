package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timing of the deployments made by NewSentinel: short, so that a test's
// failover takes one to three seconds instead of a minute.
const (
	// SentinelDownAfter is down-after-milliseconds: a primary that does not
	// answer for this long is subjectively down.
	SentinelDownAfter = time.Second
	// SentinelFailoverTimeout is failover-timeout.
	SentinelFailoverTimeout = 3 * time.Second
	// SentinelQuorum is the number of sentinels that must agree that the
	// primary is down.
	SentinelQuorum = 2
	// sentinelCount is the number of sentinels.
	sentinelCount = 3
	// sentinelReadyTimeout bounds the wait for the sentinels to know the
	// replica and each other (they learn of each other through hello
	// messages published every 2 s).
	sentinelReadyTimeout = 30 * time.Second
)

// Sentinel is a private Redis Sentinel deployment for one test, made by
// [NewSentinel]: a primary, one replica and three sentinels (quorum
// [SentinelQuorum]), all on loopback. The test may fail the primary over
// ([Sentinel.Failover]) and stop or pause the servers. Its methods are safe
// for concurrent use.
type Sentinel struct {
	// MasterName is the name the sentinels monitor the primary under: the
	// MasterName of redis.FailoverOptions.
	MasterName string
	// Servers are the two data servers: Servers[0] started as the primary,
	// Servers[1] as its replica. A failover swaps the roles; MasterAddr says
	// which is the primary now.
	Servers []*Server

	sentinels []*sentinelProc
}

// NewSentinel starts a private Sentinel deployment: a primary and its
// replica (private servers, see [NewServer]; extraArgs go to both), then
// three sentinels monitoring the primary with quorum [SentinelQuorum],
// down-after-milliseconds [SentinelDownAfter] and failover-timeout
// [SentinelFailoverTimeout]. It returns once the replica is in sync and every
// sentinel knows the primary, the replica and the two other sentinels (a few
// seconds: sentinels find each other through hello messages every 2 s), and
// stops every process when the test ends. Sentinels run redis-sentinel from
// PATH, or redis-server --sentinel when there is none. It skips the test
// under -short and fails it, with [Hint], when the servers cannot start.
func NewSentinel(t testing.TB, extraArgs ...string) *Sentinel {
	t.Helper()
	skipShort(t)
	primary := NewServer(t, extraArgs...)
	host, port, _ := net.SplitHostPort(primary.Addr())
	replica := NewServer(t, append([]string{"--replicaof", host, port}, extraArgs...)...)
	s := &Sentinel{MasterName: "tiercache-test", Servers: []*Server{primary, replica}}

	ctx, cancel := context.WithTimeout(context.Background(), sentinelReadyTimeout)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer rc.Close()
	pollFor(t, ctx, "NewSentinel", "the replica to be in sync", func() error {
		repl, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if st := infoField(repl, "master_link_status"); st != "up" {
			return fmt.Errorf("replica %s: master_link_status:%s", replica.Addr(), st)
		}
		return nil
	})

	bin, args, err := sentinelCommand()
	if err != nil {
		t.Fatalf("redistest: NewSentinel: %v\n%s", err, Hint)
	}
	for range sentinelCount {
		p := &sentinelProc{bin: bin, args: args, dir: t.TempDir()}
		// Registered after TempDir (removed after it runs) and after the
		// servers (so the sentinels stop first and never see them die).
		t.Cleanup(func() {
			if err := p.stop(); err != nil {
				t.Errorf("redistest: %v", err)
			}
		})
		if err := p.startOnFreePort(s.MasterName, primary.Addr()); err != nil {
			t.Fatalf("redistest: NewSentinel: starting a sentinel: %v\n%s", err, Hint)
		}
		s.sentinels = append(s.sentinels, p)
	}

	clients := s.sentinelClients()
	defer closeAll(clients)
	pollFor(t, ctx, "NewSentinel", "every sentinel to know the replica and the other sentinels", func() error {
		for i, c := range clients {
			m, err := c.Master(ctx, s.MasterName).Result()
			if err != nil {
				return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", s.sentinels[i].addr(), err)
			}
			if m["flags"] != "master" || m["num-slaves"] != "1" || m["num-other-sentinels"] != strconv.Itoa(sentinelCount-1) {
				return fmt.Errorf("sentinel %s: flags %q, %s replicas, %s other sentinels", s.sentinels[i].addr(),
					m["flags"], m["num-slaves"], m["num-other-sentinels"])
			}
			rs, err := c.Replicas(ctx, s.MasterName).Result()
			if err != nil {
				return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", s.sentinels[i].addr(), err)
			}
			if len(rs) != 1 || rs[0]["flags"] != "slave" || rs[0]["master-link-status"] != "ok" {
				return fmt.Errorf("sentinel %s: replicas %v", s.sentinels[i].addr(), rs)
			}
		}
		return nil
	})
	return s
}

// Addrs returns the sentinels' addresses: the SentinelAddrs of
// redis.FailoverOptions.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		out[i] = p.addr()
	}
	return out
}

// Client returns a failover client (redis.NewFailoverClient) of the
// deployment, closed when the test ends. opts, if not nil, is used with
// MasterName and SentinelAddrs set.
func (s *Sentinel) Client(t testing.TB, opts *redis.FailoverOptions) *redis.Client {
	t.Helper()
	o := redis.FailoverOptions{}
	if opts != nil {
		o = *opts
	}
	o.MasterName, o.SentinelAddrs = s.MasterName, s.Addrs()
	c := redis.NewFailoverClient(&o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// MasterAddr returns the primary's address as every sentinel reports it
// (SENTINEL GET-MASTER-ADDR-BY-NAME), or an error when a sentinel does not
// answer or they disagree.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	clients := s.sentinelClients()
	defer closeAll(clients)
	return s.masterAddr(ctx, clients)
}

func (s *Sentinel) masterAddr(ctx context.Context, clients []*redis.SentinelClient) (string, error) {
	var addr string
	for i, c := range clients {
		hp, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		if err != nil {
			return "", fmt.Errorf("sentinel %s: %w", s.sentinels[i].addr(), err)
		}
		a := net.JoinHostPort(hp[0], hp[1])
		if i > 0 && a != addr {
			return "", fmt.Errorf("the sentinels disagree: %s says %s, %s says %s",
				s.sentinels[0].addr(), addr, s.sentinels[i].addr(), a)
		}
		addr = a
	}
	return addr, nil
}

// Failover starts a failover with SENTINEL FAILOVER (no agreement needed:
// the primary is healthy) and returns the primary's address before it. It
// does not wait: see WaitFailover. A sentinel that answers NOGOODSLAVE (its
// view of the replica is not fresh yet) is asked again, for up to 10 s.
func (s *Sentinel) Failover(t testing.TB) (old string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clients := s.sentinelClients()
	defer closeAll(clients)
	old, err := s.masterAddr(ctx, clients)
	if err != nil {
		t.Fatalf("redistest: Sentinel.Failover: %v", err)
	}
	pollFor(t, ctx, "Sentinel.Failover", "SENTINEL FAILOVER to be accepted", func() error {
		err := clients[0].Failover(ctx, s.MasterName).Err()
		if err != nil && !strings.HasPrefix(err.Error(), "NOGOODSLAVE") {
			t.Fatalf("redistest: SENTINEL FAILOVER %s: %v", s.MasterName, err)
		}
		return err
	})
	return old
}

// WaitFailover polls the sentinels until every one reports a primary other
// than old and that server says it is a primary (ROLE), for up to timeout,
// and returns its address. It fails the test at timeout.
func (s *Sentinel) WaitFailover(t testing.TB, old string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	clients := s.sentinelClients()
	defer closeAll(clients)
	var addr string
	pollFor(t, ctx, "Sentinel.WaitFailover", "the sentinels to report a new primary", func() error {
		a, err := s.masterAddr(ctx, clients)
		if err != nil {
			return err
		}
		if a == old {
			return fmt.Errorf("the sentinels still report %s", old)
		}
		c := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
		defer c.Close()
		role, err := c.Do(ctx, "ROLE").Slice()
		if err != nil {
			return fmt.Errorf("ROLE on %s: %w", a, err)
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s says it is a %v", a, role)
		}
		addr = a
		return nil
	})
	return addr
}

func (s *Sentinel) sentinelClients() []*redis.SentinelClient {
	out := make([]*redis.SentinelClient, len(s.sentinels))
	for i, p := range s.sentinels {
		out[i] = redis.NewSentinelClient(&redis.Options{Addr: p.addr(), MaxRetries: -1})
	}
	return out
}

func closeAll(cs []*redis.SentinelClient) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// sentinelCommand returns the program and leading arguments that run a
// sentinel with a configuration file (appended after them).
func sentinelCommand() (bin string, args []string, err error) {
	if bin, err := exec.LookPath("redis-sentinel"); err == nil {
		return bin, nil, nil
	}
	bin, err = exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("neither redis-sentinel nor redis-server is in PATH: %w", err)
	}
	// The configuration file must come first; --sentinel follows it.
	return bin, []string{"--sentinel"}, nil
}

// sentinelProc is one sentinel process.
type sentinelProc struct {
	bin  string
	args []string
	dir  string

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *sentinelProc) addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// startOnFreePort starts the sentinel on a free port, trying another port
// when the one picked was taken meanwhile.
func (p *sentinelProc) startOnFreePort(masterName, masterAddr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err == nil {
			p.port = port
			err = p.start(masterName, masterAddr)
		}
		if err == nil || !errors.Is(err, errAddrInUse) || attempt == 4 {
			return err
		}
	}
}

// start writes the sentinel's configuration (sentinels rewrite their file,
// so each has its own) and runs it until it answers INFO. p.mu is held.
func (p *sentinelProc) start(masterName, masterAddr string) error {
	host, port, err := net.SplitHostPort(masterAddr)
	if err != nil {
		return err
	}
	conf := filepath.Join(p.dir, "sentinel.conf")
	text := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %q
sentinel monitor %s %s %s %d
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
`, p.port, p.dir, masterName, host, port, SentinelQuorum,
		masterName, SentinelDownAfter.Milliseconds(), masterName, SentinelFailoverTimeout.Milliseconds())
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return err
	}
	cmd, done, err := launch(p.bin, p.dir, append([]string{conf}, p.args...), filepath.Join(p.dir, "sentinel.log"), net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)), "sentinel")
	if err != nil {
		return err
	}
	p.cmd, p.done = cmd, done
	return nil
}

// stop kills the sentinel and waits until it has exited.
func (p *sentinelProc) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(serverStopTimeout):
		return fmt.Errorf("redis-sentinel (pid %d) did not exit within %v after SIGKILL", p.cmd.Process.Pid, serverStopTimeout)
	}
	p.cmd, p.done = nil, nil
	return nil
}

// pollFor calls check every pollInterval until it returns nil, failing the
// test, named by who, when ctx ends.
func pollFor(t testing.TB, ctx context.Context, who, what string, check func() error) {
	t.Helper()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: %s: waiting for %s: %v", who, what, err)
		case <-tick.C:
		}
	}
}

// Switchover is a planned failover that loses no acknowledged write, the
// Sentinel counterpart of CLUSTER FAILOVER: it pauses writes on the primary
// (CLIENT PAUSE pause WRITE: write commands and PUBLISH wait, reads go on),
// waits until the replica has every write the primary took (its replication
// offset equals the primary's), then starts SENTINEL FAILOVER. It returns
// the primary's address before it; see WaitFailover. pause must outlast the
// failover (the sentinels take about 1.2 s), so that no write lands on the
// old primary after the promotion.
func (s *Sentinel) Switchover(t testing.TB, pause time.Duration) (old string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old, err := s.MasterAddr(ctx)
	if err != nil {
		t.Fatalf("redistest: Sentinel.Switchover: %v", err)
	}
	var replica *Server
	for _, srv := range s.Servers {
		if srv.Addr() != old {
			replica = srv
		}
	}
	pc := redis.NewClient(&redis.Options{Addr: old, MaxRetries: -1})
	defer pc.Close()
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr(), MaxRetries: -1})
	defer rc.Close()
	if err := pc.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err(); err != nil {
		t.Fatalf("redistest: Sentinel.Switchover: CLIENT PAUSE on %s: %v", old, err)
	}
	pollFor(t, ctx, "Sentinel.Switchover", "the replica to have every write of the primary", func() error {
		pi, err := pc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		ri, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if po, ro := infoField(pi, "master_repl_offset"), infoField(ri, "slave_repl_offset"); po != ro {
			return fmt.Errorf("primary offset %s, replica offset %s", po, ro)
		}
		return nil
	})
	if got := s.Failover(t); got != old {
		t.Fatalf("redistest: Sentinel.Switchover: the primary moved from %s to %s meanwhile", old, got)
	}
	return old
}
