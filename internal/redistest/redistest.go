package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables naming the shared servers; test/redis.sh env prints
// them.
const (
	// EnvStandalone holds host:port of the shared standalone server.
	EnvStandalone = "TIERCACHE_REDIS_ADDR"
	// EnvCluster holds the comma-separated host:port list of the shared
	// cluster's nodes (any non-empty subset works as seeds).
	EnvCluster = "TIERCACHE_CLUSTER_ADDRS"
)

// Hint is appended to every failure caused by missing or unreachable Redis.
const Hint = `This test needs real Redis servers. From the repository root, either run
everything in one go:

    make test

(it starts a Redis Cluster on 127.0.0.1:7000-7005 and a standalone Redis on
127.0.0.1:7010, runs go test -race ./..., and stops them), or start the servers
once and test as often as you like:

    test/redis.sh start && eval "$(test/redis.sh env)"
    go test -race ./...
    test/redis.sh stop

test/redis.sh needs redis-server 7 or newer in PATH or a running Docker
engine (it then uses docker compose); with neither, it installs redis-server
and redis-tools with apt-get when it runs as root or with password-less sudo,
and otherwise prints the command (macOS: brew install redis). NewServer needs
redis-server in PATH. go test -short skips the tests that need Redis.`

const (
	// pingTimeout bounds the first PING to a shared server.
	pingTimeout = 5 * time.Second
	// clusterReadyTimeout bounds the wait for CLUSTER INFO to say ok, which
	// covers a failover in progress (cluster-node-timeout is 2 s).
	clusterReadyTimeout = 30 * time.Second
	// serverStartTimeout bounds the wait for a private server's first PING.
	serverStartTimeout = 10 * time.Second
	// serverStopTimeout bounds the wait for a killed private server to exit.
	serverStopTimeout = 10 * time.Second
	// pollInterval is how often readiness is polled.
	pollInterval = 20 * time.Millisecond
)

func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("redistest: needs Redis; skipped in -short mode")
	}
}

func standaloneAddr(t testing.TB) string {
	t.Helper()
	skipShort(t)
	addr := strings.TrimSpace(os.Getenv(EnvStandalone))
	if addr == "" {
		t.Fatalf("redistest: $%s is not set.\n%s", EnvStandalone, Hint)
	}
	return addr
}

func clusterAddrs(t testing.TB) []string {
	t.Helper()
	skipShort(t)
	var addrs []string
	for _, a := range strings.Split(os.Getenv(EnvCluster), ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		t.Fatalf("redistest: $%s is not set.\n%s", EnvCluster, Hint)
	}
	return addrs
}

// ping fails the test if c does not answer PING within pingTimeout.
func ping(t testing.TB, c *redis.Client, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	// Dial first: go-redis retries a refused connection with backoff, which
	// only delays the inevitable.
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.Options().Addr)
	if err != nil {
		t.Fatalf("redistest: %s at %s does not answer PING: %v\n%s", what, c.Options().Addr, err, Hint)
	}
	_ = conn.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redistest: %s at %s does not answer PING: %v\n%s", what, c.Options().Addr, err, Hint)
	}
}

// StandaloneAddr returns the address of the shared standalone server
// ($TIERCACHE_REDIS_ADDR), after checking that it answers PING. It skips the
// test under -short and fails it, with [Hint], when the variable is unset or
// the server does not answer.
func StandaloneAddr(t testing.TB) string {
	t.Helper()
	addr := standaloneAddr(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ping(t, c, "$"+EnvStandalone)
	return addr
}

// Standalone returns a client with default options connected to the shared
// standalone server ($TIERCACHE_REDIS_ADDR), which answered PING. The client
// is closed when the test ends. It skips the test under -short and fails it,
// with [Hint], when the variable is unset or the server does not answer.
//
// The server is shared with every other test: prefix keys with [Name].
func Standalone(t testing.TB) *redis.Client {
	t.Helper()
	addr := standaloneAddr(t)
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	ping(t, c, "$"+EnvStandalone)
	return c
}

// ClusterAddrs returns the addresses of the shared cluster's nodes
// ($TIERCACHE_CLUSTER_ADDRS, comma-separated), after checking that every one
// answers PING and that the cluster is ok. It skips the test under -short and
// fails it, with [Hint], when the variable is unset or the cluster is not
// usable.
func ClusterAddrs(t testing.TB) []string {
	t.Helper()
	addrs := clusterAddrs(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	waitCluster(t, c, addrs, clusterReadyTimeout)
	return addrs
}

// Cluster returns a cluster client with default options seeded with the
// shared cluster's nodes ($TIERCACHE_CLUSTER_ADDRS). Before returning it
// checks that every seed answers PING and waits, up to 30 s, until every
// primary the client knows reports cluster_state:ok (a failover caused by
// another test may be in progress). The client is closed when the test ends.
// It skips the test under -short and fails it, with [Hint], when the variable
// is unset or the cluster is not usable.
//
// The cluster is shared with every other test: prefix keys with [Name].
func Cluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	addrs := clusterAddrs(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = c.Close() })
	waitCluster(t, c, addrs, clusterReadyTimeout)
	return c
}

// waitCluster pings every seed, then polls until every primary known to c
// says cluster_state:ok, for up to timeout.
func waitCluster(t testing.TB, c *redis.ClusterClient, addrs []string, timeout time.Duration) {
	t.Helper()
	for _, addr := range addrs {
		func() {
			n := redis.NewClient(&redis.Options{Addr: addr})
			defer n.Close()
			ping(t, n, "cluster node from $"+EnvCluster)
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := clusterOK(ctx, c)
		if err == nil {
			return
		}
		c.ReloadState(ctx)
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: the cluster at %s did not become ready within %v: %v\n%s",
				strings.Join(addrs, ","), timeout, err, Hint)
		case <-tick.C:
		}
	}
}

// clusterOK reports why the cluster, as c sees it, is not ready, or nil.
func clusterOK(ctx context.Context, c *redis.ClusterClient) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var (
		mu      sync.Mutex
		masters int
	)
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		info, err := m.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", m.Options().Addr, err)
		}
		if state := infoField(info, "cluster_state"); state != "ok" {
			return fmt.Errorf("%s says cluster_state:%s", m.Options().Addr, state)
		}
		mu.Lock()
		masters++
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	if masters == 0 {
		return errors.New("the client knows no primaries yet")
	}
	// Redis lists a replica in CLUSTER SLOTS only once gossip has told the
	// other nodes its replication offset; on a fresh cluster that can lag
	// behind the replica being in sync.
	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLUSTER NODES: %w", err)
	}
	replicas := 0
	for _, line := range strings.Split(nodes, "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(f[2], "slave") {
			replicas++
		}
	}
	// The client learns replicas from CLUSTER SLOTS, which lists one only
	// once gossip has told the other nodes its replication offset.
	var known atomic.Int32
	if err := c.ForEachSlave(ctx, func(context.Context, *redis.Client) error {
		known.Add(1)
		return nil
	}); err != nil {
		return err
	}
	if int(known.Load()) < replicas {
		return fmt.Errorf("the client knows %d of the %d replicas yet", known.Load(), replicas)
	}
	return nil
}

// infoField returns the value of field in INFO-style "field:value" lines.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

const maxNameLen = 48

// Name returns a namespace unique to this test and this run, for prefixing
// keys and channels on the shared servers: t.Name() with every character
// outside [A-Za-z0-9_.-] replaced by '_' (so it holds no ':', '{' or '}' and
// does not pin keys to one cluster slot), cut to 48 bytes, then '-' and 12
// random hex digits, e.g. "TestGet_miss-5f0c2a9e13b7". Tests must never
// FLUSHALL the shared servers; they use their own namespace instead. Name
// needs no Redis and never skips.
func Name(t testing.TB) string {
	t.Helper()
	b := []byte(t.Name())
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			b[i] = '_'
		}
	}
	if len(b) > maxNameLen {
		b = b[:maxNameLen]
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:]) // never fails (crypto/rand, Go 1.24+)
	return string(b) + "-" + hex.EncodeToString(rnd[:])
}

// Server is a private redis-server process on a loopback port, for tests
// that stop, restart or pause Redis. It runs without persistence, so a
// restarted server is empty. Create it with [NewServer]; it is stopped when
// the test ends. Its methods are safe for concurrent use.
type Server struct {
	bin   string
	dir   string // working directory and log
	extra []string

	mu   sync.Mutex
	port int
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed when cmd has exited (and been reaped)
}

// NewServer starts a private redis-server from PATH:
//
//	redis-server --port N --bind 127.0.0.1 --save "" --appendonly no --enable-debug-command local [extraArgs...]
//
// on a free loopback port N, waits until it answers PING, and stops it when
// the test ends. extraArgs are appended, so they may override the defaults
// (e.g. "--maxmemory", "10mb"). It skips the test under -short and fails it,
// with [Hint], when redis-server is not in PATH or does not start.
func NewServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	return newServer(t, freePort, extraArgs)
}

// newServer is NewServer with the port picked by pickPort.
func newServer(t testing.TB, pickPort func() (int, error), extraArgs []string) *Server {
	t.Helper()
	skipShort(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: NewServer runs redis-server, which is not in PATH: %v\n%s", err, Hint)
	}
	s := &Server{bin: bin, dir: t.TempDir(), extra: extraArgs}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("redistest: %v", err)
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		s.port, err = pickPort()
		if err == nil {
			err = s.start()
		}
		if err == nil {
			return s
		}
		if !errors.Is(err, errAddrInUse) || attempt == 4 {
			t.Fatalf("redistest: starting a private redis-server: %v\n%s", err, Hint)
		}
	}
}

// Addr returns the server's host:port, which stays the same across Stop and
// Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr()
}

func (s *Server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Client returns a client with default options for the server, closed when
// the test ends. It does not check that the server is running. Note that with
// default options go-redis does not apply context deadlines to socket reads
// (see redis.Options.ContextTimeoutEnabled); build your own client from
// [Server.Addr] for other options.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server (SIGKILL, like a crash; it works on a paused server
// too) and waits until the process has exited, so its port is closed.
// Stopping a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// Start restarts a stopped server on the same port and waits until it
// answers PING. The restarted server is empty. Starting a running server does
// nothing.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restarting redis-server on %s: %v", s.addr(), err)
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(serverStopTimeout):
		return fmt.Errorf("redis-server (pid %d) on %s did not exit within %v after SIGKILL",
			s.cmd.Process.Pid, s.addr(), serverStopTimeout)
	}
	s.cmd, s.done = nil, nil
	return nil
}

var errAddrInUse = errors.New("address already in use")

// start runs redis-server on s.port and waits for it to answer PING. s.mu is
// held.
func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--enable-debug-command", "local",
		"--daemonize", "no",
		"--dir", s.dir,
		"--logfile", "",
	}
	args = append(args, s.extra...)
	cmd, done, err := launch(s.bin, s.dir, args, s.logPath(), s.addr(), "")
	if err != nil {
		return err
	}
	s.cmd, s.done = cmd, done
	return nil
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "redis.log") }

// freePort returns a loopback port that was free a moment ago. It picks from
// 20000-31999, below Linux's ephemeral range, so that the port is not taken
// by an outgoing connection between Stop and Start.
func freePort() (int, error) {
	var err error
	for range 50 {
		n, _ := rand.Int(rand.Reader, big.NewInt(12000))
		port := 20000 + int(n.Int64())
		var l net.Listener
		l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			_ = l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port found: %w", err)
}
