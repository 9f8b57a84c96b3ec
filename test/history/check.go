// Package history checks a recorded history of cache operations against the
// consistency bound the README states ("Consistency bound": a node never serves a
// value deleted or replaced more than D after the write returned), in the
// style of a linearizability checker: the operations are recorded while
// several nodes run, then [Check], a pure function, judges them offline.
//
// The model is the README's write path: the application writes its database
// first, then tells the cache, and writes of one key are serialised (a row
// lock), so the states of a key are totally ordered. State 0 of every key is
// "absent"; write i (the i-th write of the key) makes state i: a value for
// a Set, absent for a Delete (the row is deleted; the loader answers
// tiered.ErrNotFound).
package history

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Kind is what an operation did.
type Kind uint8

// Kinds of operation.
const (
	Read   Kind = iota + 1 // GetOrLoad (or Get): Value or Absent is what it returned
	Set                    // database row written with Value, then Cache.Set
	Delete                 // database row deleted, then Cache.Delete
)

func (k Kind) String() string {
	switch k {
	case Read:
		return "read"
	case Set:
		return "set"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Op is one operation of the history. Times are offsets from one
// time.Now() base (so monotonic): Inv is taken before the operation starts
// (for a write, before its database write), Resp after it returned.
type Op struct {
	Node string
	Key  string
	Kind Kind
	Inv  time.Duration
	Resp time.Duration
	// Value is the value a Set wrote or a Read returned (a Read with Absent
	// set returned "not found" and has no value).
	Value  string
	Absent bool
	// Failed marks a write whose cache call returned an error: its database
	// write happened, but when the cache learnt of it is unknown, so it
	// replaces nothing for the bound and gives no read-your-writes
	// guarantee. Failed reads are not recorded.
	Failed bool
}

func (o Op) String() string {
	res := o.Value
	if o.Absent || o.Kind == Delete {
		res = "<absent>"
	}
	if o.Failed {
		res += " (failed)"
	}
	return fmt.Sprintf("[%9.3fms %9.3fms] %s %-6s %s %s", ms(o.Inv), ms(o.Resp), o.Node, o.Kind, o.Key, res)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Violation kinds.
const (
	Stale        = "stale read"        // the state read was replaced more than the bound before the read began
	NeverWritten = "never written"     // no write of the key made the value, or it began after the read returned
	LostOwnWrite = "lost own write"    // a node read a state older than its own write that returned before the read
	Malformed    = "malformed history" // overlapping writes of a key, a response before its invocation
)

// Violation is one read (or write, for Malformed) the bound rejects, with
// the part of the history that shows why.
type Violation struct {
	What    string
	Op      Op
	Detail  string
	Excerpt []Op
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: %s", v.What, v.Op, v.Detail)
	for _, o := range v.Excerpt {
		b.WriteString("\n    ")
		b.WriteString(o.String())
	}
	return b.String()
}

// Result is what Check found.
type Result struct {
	Reads, Writes int
	// MaxStaleness is the longest time, over every read that returned a
	// state that is still allowed, by which the read began after the write
	// that replaced that state returned; Worst is that read.
	MaxStaleness time.Duration
	Worst        Op
	Violations   []Violation
}

// state is one state of a key: made by write (nil for the initial absent
// state), ended for the bound at end (the earliest return of a later
// successful write; ok false while none).
type state struct {
	write  *Op
	index  int
	absent bool
	value  string
	end    time.Duration
	ended  bool
}

func (s state) begin() time.Duration {
	if s.write == nil {
		return minDuration
	}
	return s.write.Inv
}

const minDuration = time.Duration(-1 << 63)

// Check judges ops against bound (D plus the slack the run allows):
//
//   - a read of state i must begin no more than bound after the earliest
//     return of a successful write after i (Stale);
//   - a read must return a state some write made, and whose write began
//     before the read returned (NeverWritten);
//   - a read by node N of key k that begins after N's own successful write
//     of k (state i) returned must return state i or a later one
//     (LostOwnWrite).
//
// A read returning "absent" may be any absent state; it is judged by the
// most favourable one. Writes of a key must not overlap (Malformed).
func Check(ops []Op, bound time.Duration) Result {
	var res Result
	byKey := map[string][]*Op{}
	var reads []*Op
	for i := range ops {
		o := &ops[i]
		if o.Resp < o.Inv {
			res.Violations = append(res.Violations, Violation{What: Malformed, Op: *o, Detail: "response before invocation"})
			continue
		}
		switch o.Kind {
		case Read:
			reads = append(reads, o)
		case Set, Delete:
			byKey[o.Key] = append(byKey[o.Key], o)
		default:
			res.Violations = append(res.Violations, Violation{What: Malformed, Op: *o, Detail: "unknown kind"})
		}
	}
	res.Reads = len(reads)

	states := map[string][]state{}
	for key, ws := range byKey {
		slices.SortStableFunc(ws, func(a, b *Op) int { return cmpDur(a.Inv, b.Inv) })
		res.Writes += len(ws)
		st := make([]state, 0, len(ws)+1)
		st = append(st, state{absent: true})
		for i, w := range ws {
			if i > 0 && w.Inv < ws[i-1].Resp {
				res.Violations = append(res.Violations, Violation{What: Malformed, Op: *w,
					Detail: "overlaps the previous write of the key: writes of a key must be serialised", Excerpt: []Op{*ws[i-1], *w}})
			}
			st = append(st, state{write: w, index: i + 1, absent: w.Kind == Delete, value: w.Value})
		}
		// end of state i: the earliest return of a successful later write.
		var end time.Duration
		ended := false
		for i := len(st) - 1; i >= 0; i-- {
			st[i].end, st[i].ended = end, ended
			if w := st[i].write; w != nil && !w.Failed && (!ended || w.Resp < end) {
				end, ended = w.Resp, true
			}
		}
		states[key] = st
	}

	for _, r := range reads {
		st := states[r.Key]
		if st == nil {
			st = []state{{absent: true}}
		}
		floor := ownFloor(st, r)
		best, stale, found := -1, time.Duration(0), false
		var notYet *state
		for i := range st {
			s := &st[i]
			if s.absent != r.Absent || (!r.Absent && s.value != r.Value) {
				continue
			}
			if s.begin() > r.Resp {
				notYet = s
				continue
			}
			found = true
			sl := staleness(*s, r.Inv)
			if best < 0 || better(i, sl, best, stale, floor) {
				best, stale = i, sl
			}
		}
		switch {
		case !found:
			v := Violation{What: NeverWritten, Op: *r, Detail: "no write of the key made this value"}
			if notYet != nil {
				v.Detail = "the write that made this value began after the read returned"
				v.Excerpt = []Op{*notYet.write}
			}
			res.Violations = append(res.Violations, v)
		case best < floor:
			res.Violations = append(res.Violations, Violation{What: LostOwnWrite, Op: *r,
				Detail:  fmt.Sprintf("returned state %d of the key, older than state %d this node wrote before the read began", best, floor),
				Excerpt: excerpt(st, best, r)})
		case stale > bound:
			res.Violations = append(res.Violations, Violation{What: Stale, Op: *r,
				Detail:  fmt.Sprintf("returned state %d, replaced %v before the read began (bound %v)", best, stale, bound),
				Excerpt: excerpt(st, best, r)})
		default:
			if stale > res.MaxStaleness {
				res.MaxStaleness, res.Worst = stale, *r
			}
		}
	}
	slices.SortStableFunc(res.Violations, func(a, b Violation) int { return cmpDur(a.Op.Inv, b.Op.Inv) })
	return res
}

// better reports whether state i (staleness si) excuses a read better than
// state j (staleness sj): one at or past the node's own write first, then
// the less stale.
func better(i int, si time.Duration, j int, sj time.Duration, floor int) bool {
	if (i >= floor) != (j >= floor) {
		return i >= floor
	}
	return si < sj
}

// staleness is how long before inv state s was replaced (0 if it was not).
func staleness(s state, inv time.Duration) time.Duration {
	if !s.ended || s.end >= inv {
		return 0
	}
	return inv - s.end
}

// ownFloor is the newest state of r's key that r's node wrote successfully
// and saw return before r began (0 if none).
func ownFloor(st []state, r *Op) int {
	floor := 0
	for i, s := range st {
		if w := s.write; w != nil && !w.Failed && w.Node == r.Node && w.Resp <= r.Inv {
			floor = i
		}
	}
	return floor
}

// excerpt is the history that judges a read of state i: the write that made
// it, the writes after it up to the read's return (at most 6, the middle
// elided), then the read.
func excerpt(st []state, i int, r *Op) []Op {
	var ws []Op
	for j := max(i, 1); j < len(st); j++ {
		if st[j].write.Inv > r.Resp {
			break
		}
		ws = append(ws, *st[j].write)
	}
	if len(ws) > 6 {
		ws = append(ws[:3:3], ws[len(ws)-3:]...)
	}
	return append(ws, *r)
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
