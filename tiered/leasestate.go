package tiered

import (
	"errors"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// The lease protocol of one key, as a pure state machine (DESIGN §6.1).
//
// The engine (engine.go) feeds each key's machine what L2 answered (an
// event) and does what the machine answers (an action); the machine does
// no I/O and reads no clock (the event carries now). One key and a batch of
// keys run the same machine: the engine only groups the actions of a round
// into as few L2 calls and loader calls as it can.

// leaseAction is what the engine does next for a key.
type leaseAction uint8

const (
	// actAccept: the entry answers the key (a value, a cached not-found, a
	// tagged value): accept it. If it proves unusable (corrupt, or its tags
	// changed), the engine feeds evUnusable.
	actAccept leaseAction = iota + 1
	// actLoad: the lease with the token is ours: load under it.
	actLoad
	// actAlone: load for ourselves and keep the result in L1 only (L2
	// failed, the value cannot be stored in L2, or the holder is too slow).
	// A token the engine sent whose outcome is unknown is released.
	actAlone
	// actUnleased: load and write the result with a plain SET
	// (WithoutLeases).
	actUnleased
	// actTakeOver: the lease in the entry is dead: replace it by ours, by a
	// compare-and-swap on its token; the engine feeds evTakeOver.
	actTakeOver
	// actTakeLease: the key is empty, or holds the marker of an older failed
	// load: take the lease (Acquire, or a compare-and-swap on the marker);
	// the engine feeds evTakeLease.
	actTakeLease
	// actWait: another holds the lease in the entry: wait for its result
	// (a wake or the poll timer), then read again.
	actWait
	// actRead: the key changed under us: read it again at once.
	actRead
	// actFail: the load waited for failed: return ErrLoadFailed with the
	// marker's message.
	actFail
	// actAbort: the flight ended (Close, load timeout) while L2 failed:
	// nobody is left to load for.
	actAbort
)

var actionNames = [...]string{"", "accept", "load", "alone", "unleased", "take over", "take lease", "wait", "read", "fail", "abort"}

func (a leaseAction) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action(?)"
}

// leaseEventKind says what an event reports.
type leaseEventKind uint8

const (
	// evRead: a read-or-lease answered (entry, token offered, won, err).
	evRead leaseEventKind = iota + 1
	// evUnusable: the entry accepted last held no usable value (corrupt and
	// deleted, or its tags changed): it counts as a miss.
	evUnusable
	// evTakeOver: the compare-and-swap of actTakeOver answered (token, won,
	// err).
	evTakeOver
	// evTakeLease: the attempt of actTakeLease answered (token, won, err,
	// and when not won, the entry the key holds, zero after a lost
	// compare-and-swap).
	evTakeLease
	// evWaited: the wait of actWait is over; late reports that the flight
	// has less than half its load timeout left.
	evWaited
)

// leaseEvent is what L2 (or the wait) answered for a key.
type leaseEvent struct {
	kind    leaseEventKind
	e       driver.Entry
	token   uint64
	won     bool
	err     error
	ctxDone bool      // the flight's context has ended
	late    bool      // evWaited: half the flight is gone
	now     time.Time // for lease expiry
}

// leaseRules are the parameters of the machine shared by every key of a
// cache.
type leaseRules struct {
	noLeases bool
	leaseTTL time.Duration
}

// keyLease is one key's state in the machine.
type keyLease struct {
	waitingOn uint64       // token of the lease waited on; 0 before waiting
	sent      uint64       // token of our last read-or-lease whose outcome is unknown
	token     uint64       // actLoad: the lease won
	entry     driver.Entry // actAccept, actTakeOver, actTakeLease, actWait, actFail: the entry
	takeover  bool         // actLoad: the lease was taken over from a dead or failed holder, or after waiting
	err       error        // actAlone after an L2 failure: the error, for the report
}

// expired reports whether lease e has ended at now: its own expiry passed,
// or lies further ahead than any lease of this cache can (a lease is
// written and renewed to expire LeaseTTL from its holder's now; twice that
// plus a second allows for clock skew between nodes): such a lease is
// planted or corrupt, and must not block the key (its TTL in Redis may be
// none). Nodes of one cache are expected to share its LeaseTTL.
func (r leaseRules) expired(e driver.Entry, now time.Time) bool {
	return !e.ExpiresAt.After(now) || e.ExpiresAt.After(now.Add(2*r.leaseTTL+time.Second))
}

// next moves s by ev and returns what to do.
func (r leaseRules) next(s *keyLease, ev leaseEvent) leaseAction {
	s.err = nil
	switch ev.kind {
	case evRead:
		switch {
		case ev.won:
			return s.load(ev.token, s.waitingOn != 0)
		case ev.err != nil:
			s.sent = ev.token
			if ev.ctxDone {
				return actAbort
			}
			s.err = ev.err
			return actAlone
		case ev.e.Kind == driver.KindLease && s.sent != 0 && ev.e.Version == s.sent:
			// A read that failed had taken the lease after all.
			return s.load(s.sent, s.waitingOn != 0)
		case ev.e.Kind.IsValue():
			s.entry = ev.e
			return actAccept
		}
		return r.unanswered(s, ev.e, ev.now)
	case evUnusable:
		// Corrupt (deleted) or of changed tags: a miss.
		return r.miss(s, ev.e)
	case evTakeOver:
		switch {
		case ev.err != nil:
			s.err = ev.err
			return actAlone
		case ev.won:
			return s.load(ev.token, true)
		}
		return actRead // someone else changed the key
	case evTakeLease:
		switch {
		case ev.err != nil:
			s.err = ev.err
			return actAlone
		case ev.won:
			return s.load(ev.token, s.waitingOn != 0)
		case ev.e.Kind.IsValue():
			s.entry = ev.e
			return actAccept
		case ev.e.Kind != driver.KindLease || r.expired(ev.e, ev.now):
			return actRead // the key changed under us, or the lease is dead
		}
		return s.wait(ev.e)
	case evWaited:
		if ev.late {
			// Half the flight is gone and the holder is still loading:
			// load for ourselves with the other half rather than fail.
			return actAlone
		}
		return actRead
	}
	// Not reached: every event kind is handled above.
	s.err = errUnknownEvent
	return actAlone
}

var errUnknownEvent = errors.New("tiered: unknown lease event")

// unanswered decides for an entry that is not a value.
func (r leaseRules) unanswered(s *keyLease, e driver.Entry, now time.Time) leaseAction {
	switch {
	case e.Kind == driver.KindFailed && s.waitingOn != 0 && e.Version == s.waitingOn:
		// The load we waited for failed: its callers got the loader's
		// error, and so do we.
		s.entry = e
		return actFail
	case e.Kind == driver.KindUnstorable:
		// The value cannot be stored in L2: every node loads for itself
		// while the marker lasts.
		return actAlone
	case e.Kind == driver.KindLease && r.expired(e, now):
		// The holder died, or the lease is planted or corrupt: take it over
		// by its token.
		if r.noLeases {
			return actUnleased
		}
		s.entry = e
		return actTakeOver
	case e.Kind == driver.KindLease:
		return s.wait(e)
	}
	return r.miss(s, e)
}

// miss decides for an empty key, the marker of an older failed load, or an
// unusable value: take the lease.
func (r leaseRules) miss(s *keyLease, e driver.Entry) leaseAction {
	if r.noLeases {
		return actUnleased
	}
	s.entry = e
	return actTakeLease
}

func (s *keyLease) load(token uint64, takeover bool) leaseAction {
	s.token, s.takeover = token, takeover
	return actLoad
}

func (s *keyLease) wait(e driver.Entry) leaseAction {
	s.entry = e
	s.waitingOn = e.Version
	return actWait
}
