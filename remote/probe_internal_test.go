package remote

import (
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

func entryWithVersion(v uint64) driver.Entry {
	return driver.Entry{Kind: driver.KindLease, ExpiresAt: time.Now().Add(time.Minute), Version: v}
}

// The choice of compare-and-set command from what the probe found: the
// native commands are used only where the probe saw them, the scripts
// otherwise. (The native path cannot run against the harness' Redis 7.0;
// this is the part of it that can be tested here.)
func TestChooseCAS(t *testing.T) {
	tests := []struct {
		name          string
		caps          Capabilities
		swap, release casMethod
	}{
		{"not probed", Capabilities{SetIfEq: true, DelEx: true, DelIfEq: true}, byScript, byScript},
		{"redis 7.0", Capabilities{Probed: true, SetNXGet: true}, byScript, byScript},
		{"redis 6.2", Capabilities{Probed: true}, byScript, byScript},
		{"redis 8.4", Capabilities{Probed: true, SetNXGet: true, SetIfEq: true, DelEx: true}, bySetIfEq, byDelEx},
		{"valkey 8.1", Capabilities{Probed: true, SetNXGet: true, SetIfEq: true}, bySetIfEq, byScript},
		{"valkey 9.0", Capabilities{Probed: true, SetNXGet: true, SetIfEq: true, DelIfEq: true}, bySetIfEq, byDelIfEq},
		{"both deletes", Capabilities{Probed: true, SetIfEq: true, DelEx: true, DelIfEq: true}, bySetIfEq, byDelEx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chooseSwap(tt.caps); got != tt.swap {
				t.Errorf("chooseSwap = %v, want %v", got, tt.swap)
			}
			if got := chooseRelease(tt.caps); got != tt.release {
				t.Errorf("chooseRelease = %v, want %v", got, tt.release)
			}
			if got, want := tt.caps.Swap(), tt.swap.String(); got != want {
				t.Errorf("Swap() = %q, want %q", got, want)
			}
		})
	}
}

// holds is the native path's version test: it must accept exactly what
// the scripts' holdsVersion accepts.
func TestHolds(t *testing.T) {
	env := Encode(nil, entryWithVersion(42))
	tests := []struct {
		name    string
		raw     []byte
		version uint64
		want    bool
	}{
		{"same version", env, 42, true},
		{"other version", env, 43, false},
		{"short", env[:headerSize-1], 42, false},
		{"bad magic", append([]byte{0}, env[1:]...), 42, false},
		{"other format", append([]byte{magic, 2}, env[2:]...), 42, false},
		{"with payload", append(append([]byte(nil), env...), "payload"...), 42, true},
	}
	for _, tt := range tests {
		if got := holds(tt.raw, tt.version); got != tt.want {
			t.Errorf("%s: holds = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// classify reads the replies of Redis 7.0 and of later versions (whose
// NOPERM wording changed in 7.2).
func TestClassify(t *testing.T) {
	tests := []struct {
		reply string
		want  verdict
	}{
		{"NOPERM this user has no permissions to run the 'eval' command", verdict{refused: "EVAL"}},
		{"NOPERM User u has no permissions to run the 'evalsha' command", verdict{refused: "EVALSHA"}},
		{"NOPERM this user has no permissions to run the 'cluster|slots' command", verdict{refused: "CLUSTER SLOTS"}},
		{"NOPERM this user has no permissions to access one of the keys used as arguments", verdict{allowed: true, keyRefused: true}},
		{"NOPERM No permissions to access a key", verdict{allowed: true, keyRefused: true}},
		{"WRONGPASS invalid username-password pair or user is disabled.", verdict{auth: true}},
		{"NOAUTH Authentication required.", verdict{auth: true}},
		{"ERR syntax error", verdict{syntax: true}},
		{"ERR invalid expire time in 'set' command", verdict{allowed: true}},
		{"NOSCRIPT No matching script. Please use EVAL.", verdict{allowed: true}},
		{"ERR unknown command 'DELEX', with args beginning with: 'k' 'IFEQ' 'x' ", verdict{}},
	}
	for _, tt := range tests {
		if got := classify(errors.New(tt.reply)); got != tt.want {
			t.Errorf("classify(%q) = %+v, want %+v", tt.reply, got, tt.want)
		}
	}
}
