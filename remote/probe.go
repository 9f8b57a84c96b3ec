package remote

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of the start-up probe's options.
const (
	// DefaultProbeKey is the key the start-up probe names in its commands
	// when WithProbeKey is not given. The probe never writes it.
	DefaultProbeKey = "tiercache:probe"
	// DefaultStartTimeout bounds the start-up probe.
	DefaultStartTimeout = 2 * time.Second
)

// WithProbeKey sets the key the start-up probe names in its commands (see
// New). The probe never creates or changes it; give a key the Redis user
// may access (tiercache.New gives name + ":\x00probe"), else the probe
// cannot tell whether the server offers SET IFEQ. Default DefaultProbeKey;
// it must not be empty.
func WithProbeKey(key string) Option {
	return func(s *Store) error {
		if key == "" {
			return fmt.Errorf("%w: empty probe key", ErrInvalidOption)
		}
		s.probeKey = key
		return nil
	}
}

// WithStartTimeout bounds the start-up probe of New. Default
// DefaultStartTimeout (2 s); it must be positive. A probe that times out
// does not fail New (see New).
func WithStartTimeout(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("%w: start timeout %v must be positive", ErrInvalidOption, d)
		}
		s.startTimeout = d
		return nil
	}
}

// Capabilities is what New's probe found out about the server.
type Capabilities struct {
	// Probed reports whether the probe got answers. False when Redis was
	// unreachable (or too slow) at New: the store then uses the scripts,
	// which every server since Redis 2.6 runs.
	Probed bool
	// KeyAllowed reports whether the user may access the probe key (see
	// WithProbeKey). Without it the probe still checks the commands (Redis
	// checks a command's permission before its keys) but cannot see which
	// options SET has: SetNXGet and SetIfEq are then false, and Acquire
	// finds out about SET NX GET on its first call, as before.
	KeyAllowed bool
	// SetNXGet: SET NX GET (Redis 7.0+). Without it leases are taken by a
	// script.
	SetNXGet bool
	// SetIfEq: SET key value IFEQ match (Redis 8.4+, Valkey 8.1+).
	SetIfEq bool
	// DelEx: DELEX key IFEQ match (Redis 8.4+).
	DelEx bool
	// DelIfEq: DELIFEQ key match (Valkey 9.0+).
	DelIfEq bool
}

// Swap and Release name the commands the store uses for CompareAndSwap
// (fills) and CompareAndDelete (lease releases): "EVALSHA" (the Lua
// scripts), "SET IFEQ", "DELEX" or "DELIFEQ".
func (c Capabilities) Swap() string    { return chooseSwap(c).String() }
func (c Capabilities) Release() string { return chooseRelease(c).String() }

// Capabilities returns what New's probe found out about the server.
func (s *Store) Capabilities() Capabilities { return s.caps }

// casMethod is how the store compares and sets (or deletes).
type casMethod uint8

const (
	byScript  casMethod = iota // the Lua scripts (EVALSHA, EVAL on NOSCRIPT)
	bySetIfEq                  // GET, then SET IFEQ on the bytes read
	byDelEx                    // GET, then DELEX IFEQ on the bytes read
	byDelIfEq                  // GET, then DELIFEQ on the bytes read
)

func (m casMethod) String() string {
	return [...]string{"EVALSHA", "SET IFEQ", "DELEX", "DELIFEQ"}[m]
}

// chooseSwap picks the command of CompareAndSwap: SET IFEQ where the
// server has it, else the script.
func chooseSwap(c Capabilities) casMethod {
	if c.Probed && c.SetIfEq {
		return bySetIfEq
	}
	return byScript
}

// chooseRelease picks the command of CompareAndDelete: DELEX (Redis) or
// DELIFEQ (Valkey) where the server has one, else the script.
func chooseRelease(c Capabilities) casMethod {
	switch {
	case !c.Probed:
		return byScript
	case c.DelEx:
		return byDelEx
	case c.DelIfEq:
		return byDelIfEq
	}
	return byScript
}

// probeScript is the script the probe runs: it touches no key.
const probeScript = "return 1"

// probeCommand is one command of the start-up probe.
type probeCommand struct {
	name     string // as reported: "EVALSHA", "SET"
	args     []any
	optional bool // a capability: a refusal or an unknown command means "no", not an error
}

// probeCommands returns the commands of the probe, on key: every command
// the store sends, or that its scripts run, in a form that changes
// nothing (PX 0 is refused after the ACL check; DEL and PEXPIRE of a key
// that does not exist). Redis checks a command's ACL permission before
// its keys, so a refusal of the key still proves the command is allowed.
func probeCommands(key string) []probeCommand {
	sum := sha1.Sum([]byte(probeScript))
	return []probeCommand{
		{name: "GET", args: []any{"GET", key}},
		{name: "MGET", args: []any{"MGET", key}},
		{name: "SET", args: []any{"SET", key, "v", "NX", "GET", "PX", 0}},
		{name: "DEL", args: []any{"DEL", key}},
		{name: "PTTL", args: []any{"PTTL", key}},
		{name: "PEXPIRE", args: []any{"PEXPIRE", key, 1}},
		{name: "TIME", args: []any{"TIME"}},
		{name: "EVAL", args: []any{"EVAL", probeScript, 0}},
		{name: "EVALSHA", args: []any{"EVALSHA", hex.EncodeToString(sum[:]), 0}},
		{name: "SET IFEQ", args: []any{"SET", key, "v", "IFEQ", "x", "PX", 0}, optional: true},
		{name: "DELEX", args: []any{"DELEX", key, "IFEQ", "x"}, optional: true},
		{name: "DELIFEQ", args: []any{"DELIFEQ", key, "x"}, optional: true},
	}
}

// probe runs findOut and applies what it found, waiting at most the start
// timeout: go-redis applies a context's deadline to socket reads only with
// ContextTimeoutEnabled, so a frozen server could hold the probe for the
// client's read timeout and more. A probe still waiting then is left to
// end by the client's own timeouts (or its Close); its answer is dropped.
func (s *Store) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.startTimeout)
	defer cancel()
	type result struct {
		caps Capabilities
		err  error
	}
	done := make(chan result, 1)
	go func() {
		caps, err := findOut(ctx, s.client, s.probeKey+":"+randomSuffix())
		done <- result{caps, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		// No answer in time: the store starts with the scripts.
	}
	if r.err != nil {
		return r.err
	}
	s.caps = r.caps
	if r.caps.Probed && r.caps.KeyAllowed {
		s.acquireByScript.Store(!r.caps.SetNXGet)
	}
	s.swap, s.release = chooseSwap(r.caps), chooseRelease(r.caps)
	return nil
}

// findOut finds out, in one round trip, whether the Redis user may run
// every command the store needs, and which compare-and-set commands the
// server offers, with probes on key. It returns an error matching
// ErrPermission naming the refused commands (or the refused credentials);
// an unreachable Redis is not an error: Probed is then false.
func findOut(ctx context.Context, client Client, key string) (Capabilities, error) {
	cmds := probeCommands(key)
	pipe := client.Pipeline()
	replies := make([]*redis.Cmd, len(cmds))
	for i, c := range cmds {
		replies[i] = pipe.Do(ctx, c.args...)
	}
	if _, err := pipe.Exec(ctx); err != nil && replies[0].Err() == nil {
		// The connection failed before any command ran (go-redis then
		// leaves the commands without errors): refused credentials, or no
		// answer at all.
		if classify(err).auth {
			return Capabilities{}, fmt.Errorf("%w: Redis refused the credentials (%s): check the client's username and password: %w",
				ErrPermission, firstWord(err), err)
		}
		return Capabilities{}, nil
	}
	var (
		refused []string
		first   error
		caps    = Capabilities{Probed: true, KeyAllowed: true}
	)
	for i, c := range cmds {
		err := replies[i].Err()
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		if err != nil && !isRedisReply(err) {
			// Not an answer of the server (unreachable, timed out): the
			// store cannot know; it starts with the scripts.
			return Capabilities{}, nil
		}
		v := classify(err)
		if v.keyRefused {
			caps.KeyAllowed = false
		}
		switch {
		case v.auth:
			return Capabilities{}, fmt.Errorf("%w: Redis refused the credentials (%s): check the client's username and password: %w",
				ErrPermission, firstWord(err), err)
		case v.refused != "" && !c.optional:
			if !slices.Contains(refused, v.refused) {
				refused = append(refused, v.refused)
			}
			if first == nil {
				first = err
			}
		case c.optional:
			ok := v.allowed && !v.keyRefused
			switch c.name {
			case "SET IFEQ":
				caps.SetIfEq = ok
			case "DELEX":
				caps.DelEx = ok
			case "DELIFEQ":
				caps.DelIfEq = ok
			}
		case c.name == "SET":
			caps.SetNXGet = v.allowed && !v.keyRefused && !v.syntax
		}
	}
	if len(refused) > 0 {
		return Capabilities{}, fmt.Errorf("%w: NOPERM, the Redis user may not run %s, which tiercache needs: grant them "+
			"(docs/deploying.md, ACL, lists every command): %w", ErrPermission, strings.Join(refused, ", "), first)
	}
	return caps, nil
}

// verdict is what one probe reply says.
type verdict struct {
	allowed    bool   // the server ran or parsed the command (its ACL check passed)
	refused    string // the command a NOPERM named ("EVALSHA", "CLUSTER SLOTS"); "" if none
	keyRefused bool   // NOPERM on the key: the command itself is allowed
	auth       bool   // WRONGPASS or NOAUTH
	syntax     bool   // a syntax error: the server does not know an option
}

// classify reads one probe reply. Redis checks, in order: that it knows
// the command, its arity, the user's ACL permission for the command, then
// for its keys, and only then parses the options; so an error past the
// ACL check ("invalid expire time", NOSCRIPT) proves the command allowed.
func classify(err error) verdict {
	if err == nil {
		return verdict{allowed: true}
	}
	msg := err.Error()
	low := strings.ToLower(msg)
	switch {
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"):
		return verdict{auth: true}
	case strings.HasPrefix(msg, "NOPERM"):
		if cmd := refusedCommand(msg); cmd != "" {
			return verdict{refused: cmd}
		}
		return verdict{allowed: true, keyRefused: true}
	case strings.Contains(low, "unknown command"), strings.Contains(low, "unknown subcommand"):
		return verdict{}
	case strings.Contains(low, "syntax error"):
		return verdict{syntax: true}
	}
	return verdict{allowed: true}
}

// refusedCommand returns the command a NOPERM reply names ("... no
// permissions to run the 'cluster|slots' command"), as "CLUSTER SLOTS",
// or "".
func refusedCommand(msg string) string {
	_, rest, ok := strings.Cut(msg, "to run the '")
	if !ok {
		return ""
	}
	cmd, _, ok := strings.Cut(rest, "'")
	if !ok {
		return ""
	}
	return strings.ToUpper(strings.ReplaceAll(cmd, "|", " "))
}

// isRedisReply reports whether err is an error reply of the server.
func isRedisReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !isUnavailable(err)
}

func firstWord(err error) string {
	w, _, _ := strings.Cut(err.Error(), " ")
	return w
}

// randomSuffix makes each probe name its own key, so that two stores
// starting at once never meet on one.
func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
