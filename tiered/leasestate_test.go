package tiered

import (
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// TestLeaseMachine checks each transition of the lease machine: from a
// state and an event, the action and the state it leaves.
func TestLeaseMachine(t *testing.T) {
	now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	const ttl = 10 * time.Second
	live := func(token uint64) driver.Entry {
		return driver.Entry{Kind: driver.KindLease, Version: token, ExpiresAt: now.Add(ttl)}
	}
	dead := func(token uint64) driver.Entry {
		return driver.Entry{Kind: driver.KindLease, Version: token, ExpiresAt: now.Add(-time.Millisecond)}
	}
	planted := driver.Entry{Kind: driver.KindLease, Version: 9, ExpiresAt: now.Add(3 * ttl)}
	value := driver.Entry{Kind: driver.KindValue, Version: 5, Payload: []byte("v")}
	failed := func(token uint64) driver.Entry {
		return driver.Entry{Kind: driver.KindFailed, Version: token, Payload: []byte("boom")}
	}
	unstorable := driver.Entry{Kind: driver.KindUnstorable, Version: 3}
	boom := errors.New("boom")

	tests := []struct {
		name     string
		noLeases bool
		s        keyLease
		ev       leaseEvent
		want     leaseAction
		check    func(t *testing.T, s keyLease)
	}{
		{name: "read won: load under the token", ev: leaseEvent{kind: evRead, won: true, token: 7},
			want: actLoad, check: func(t *testing.T, s keyLease) { wantToken(t, s, 7, false) }},
		{name: "read won after waiting: a takeover", s: keyLease{waitingOn: 4}, ev: leaseEvent{kind: evRead, won: true, token: 7},
			want: actLoad, check: func(t *testing.T, s keyLease) { wantToken(t, s, 7, true) }},
		{name: "read failed: load alone, remembering the token sent", ev: leaseEvent{kind: evRead, err: boom, token: 7},
			want: actAlone, check: func(t *testing.T, s keyLease) {
				if s.sent != 7 || !errors.Is(s.err, boom) {
					t.Fatalf("sent %d err %v; want 7 and boom", s.sent, s.err)
				}
			}},
		{name: "read failed as the flight ended: abort", ev: leaseEvent{kind: evRead, err: boom, ctxDone: true}, want: actAbort},
		{name: "our own lease from a read whose outcome was unknown: load", s: keyLease{sent: 7}, ev: leaseEvent{kind: evRead, e: live(7)},
			want: actLoad, check: func(t *testing.T, s keyLease) { wantToken(t, s, 7, false) }},
		{name: "a value: accept", ev: leaseEvent{kind: evRead, e: value}, want: actAccept,
			check: func(t *testing.T, s keyLease) { wantEntry(t, s, value) }},
		{name: "a cached not-found: accept", ev: leaseEvent{kind: evRead, e: driver.Entry{Kind: driver.KindNotFound}}, want: actAccept},
		{name: "a tagged value: accept", ev: leaseEvent{kind: evRead, e: driver.Entry{Kind: driver.KindTagged}}, want: actAccept},
		{name: "empty: take the lease", ev: leaseEvent{kind: evRead}, want: actTakeLease},
		{name: "empty without leases: load unleased", noLeases: true, ev: leaseEvent{kind: evRead}, want: actUnleased},
		{name: "another's live lease: wait on its token", ev: leaseEvent{kind: evRead, e: live(4)}, want: actWait,
			check: func(t *testing.T, s keyLease) {
				if s.waitingOn != 4 {
					t.Fatalf("waitingOn %d, want 4", s.waitingOn)
				}
			}},
		{name: "a dead lease: take it over", ev: leaseEvent{kind: evRead, e: dead(4)}, want: actTakeOver,
			check: func(t *testing.T, s keyLease) { wantEntry(t, s, dead(4)) }},
		{name: "a planted lease (expiry too far ahead): take it over", ev: leaseEvent{kind: evRead, e: planted}, want: actTakeOver},
		{name: "a dead lease without leases: load unleased", noLeases: true, ev: leaseEvent{kind: evRead, e: dead(4)}, want: actUnleased},
		{name: "the failure of the load waited for: fail", s: keyLease{waitingOn: 4}, ev: leaseEvent{kind: evRead, e: failed(4)}, want: actFail},
		{name: "an older failure marker: take the lease by it", s: keyLease{waitingOn: 3}, ev: leaseEvent{kind: evRead, e: failed(4)}, want: actTakeLease,
			check: func(t *testing.T, s keyLease) { wantEntry(t, s, failed(4)) }},
		{name: "a failure marker, not waiting: take the lease by it", ev: leaseEvent{kind: evRead, e: failed(4)}, want: actTakeLease},
		{name: "unstorable marker: load alone", ev: leaseEvent{kind: evRead, e: unstorable}, want: actAlone},
		{name: "an unusable value: a miss", ev: leaseEvent{kind: evUnusable, e: value}, want: actTakeLease},
		{name: "an unusable value without leases: load unleased", noLeases: true, ev: leaseEvent{kind: evUnusable, e: value}, want: actUnleased},
		{name: "takeover won: load, counted as a takeover", ev: leaseEvent{kind: evTakeOver, won: true, token: 8}, want: actLoad,
			check: func(t *testing.T, s keyLease) { wantToken(t, s, 8, true) }},
		{name: "takeover lost: read again", ev: leaseEvent{kind: evTakeOver}, want: actRead},
		{name: "takeover failed: load alone", ev: leaseEvent{kind: evTakeOver, err: boom}, want: actAlone},
		{name: "lease taken: load", ev: leaseEvent{kind: evTakeLease, won: true, token: 8}, want: actLoad,
			check: func(t *testing.T, s keyLease) { wantToken(t, s, 8, false) }},
		{name: "lease taken after waiting: a takeover", s: keyLease{waitingOn: 2}, ev: leaseEvent{kind: evTakeLease, won: true, token: 8}, want: actLoad,
			check: func(t *testing.T, s keyLease) { wantToken(t, s, 8, true) }},
		{name: "lease taking failed: load alone", ev: leaseEvent{kind: evTakeLease, err: boom}, want: actAlone},
		{name: "lease lost to a value: accept it", ev: leaseEvent{kind: evTakeLease, e: value}, want: actAccept},
		{name: "lease lost to a live lease: wait", ev: leaseEvent{kind: evTakeLease, e: live(6)}, want: actWait},
		{name: "lease lost to a dead lease: read again", ev: leaseEvent{kind: evTakeLease, e: dead(6)}, want: actRead},
		{name: "lease lost by compare-and-swap (no entry): read again", ev: leaseEvent{kind: evTakeLease}, want: actRead},
		{name: "waited: read again", s: keyLease{waitingOn: 4}, ev: leaseEvent{kind: evWaited}, want: actRead},
		{name: "waited half the flight: load alone", s: keyLease{waitingOn: 4}, ev: leaseEvent{kind: evWaited, late: true}, want: actAlone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := leaseRules{noLeases: tt.noLeases, leaseTTL: ttl}
			s := tt.s
			ev := tt.ev
			ev.now = now
			if got := r.next(&s, ev); got != tt.want {
				t.Fatalf("next = %v, want %v", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

// TestLeaseMachineWaitThenTakeOver runs one key through a sequence: it
// waits on a holder, the holder dies, it takes the lease over and loads.
func TestLeaseMachineWaitThenTakeOver(t *testing.T) {
	now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	r := leaseRules{leaseTTL: time.Second}
	var s keyLease
	steps := []struct {
		ev   leaseEvent
		want leaseAction
	}{
		{leaseEvent{kind: evRead, e: driver.Entry{Kind: driver.KindLease, Version: 4, ExpiresAt: now.Add(time.Second)}}, actWait},
		{leaseEvent{kind: evWaited}, actRead},
		{leaseEvent{kind: evRead, e: driver.Entry{Kind: driver.KindLease, Version: 4, ExpiresAt: now.Add(-time.Second)}}, actTakeOver},
		{leaseEvent{kind: evTakeOver, won: true, token: 11}, actLoad},
	}
	for i, st := range steps {
		st.ev.now = now
		if got := r.next(&s, st.ev); got != st.want {
			t.Fatalf("step %d: next = %v, want %v", i, got, st.want)
		}
	}
	if s.token != 11 || !s.takeover || s.waitingOn != 4 {
		t.Fatalf("state %+v; want token 11, a takeover, waiting on 4", s)
	}
}

func wantToken(t *testing.T, s keyLease, token uint64, takeover bool) {
	t.Helper()
	if s.token != token || s.takeover != takeover {
		t.Fatalf("token %d takeover %v; want %d and %v", s.token, s.takeover, token, takeover)
	}
}

func wantEntry(t *testing.T, s keyLease, e driver.Entry) {
	t.Helper()
	if s.entry.Kind != e.Kind || s.entry.Version != e.Version {
		t.Fatalf("entry %v/%d; want %v/%d", s.entry.Kind, s.entry.Version, e.Kind, e.Version)
	}
}
