package history

import (
	"strings"
	"testing"
	"time"
)

const bound = 100 * time.Millisecond

func msd(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func set(node, key, value string, inv, resp float64) Op {
	return Op{Node: node, Key: key, Kind: Set, Value: value, Inv: msd(inv), Resp: msd(resp)}
}

func del(node, key string, inv, resp float64) Op {
	return Op{Node: node, Key: key, Kind: Delete, Inv: msd(inv), Resp: msd(resp)}
}

func read(node, key, value string, inv, resp float64) Op {
	return Op{Node: node, Key: key, Kind: Read, Value: value, Absent: value == "", Inv: msd(inv), Resp: msd(resp)}
}

// TestCheckAccepts: a history that keeps the bound in every allowed way.
func TestCheckAccepts(t *testing.T) {
	ops := []Op{
		read("B", "k1", "", 0, 1),            // initial state: absent
		set("A", "k1", "k1@v1", 10, 12),      // state 1
		read("B", "k1", "", 11, 13),          // concurrent with the write: old state
		read("B", "k1", "k1@v1", 11, 13),     // concurrent with the write: new state
		read("A", "k1", "k1@v1", 13, 14),     // A reads its own write
		read("C", "k1", "", 90, 91),          // 78 ms after state 1 returned: stale, within the bound
		set("B", "k1", "k1@v2", 100, 105),    // state 2
		read("C", "k1", "k1@v1", 204.9, 206), // 99.9 ms stale: within
		del("C", "k1", 300, 302),             // state 3: absent
		read("A", "k1", "k1@v2", 310, 311),   // 8 ms stale
		read("C", "k1", "", 303, 304),        // C's own delete: absent
		set("A", "k2", "k2@v1", 0, 500),      // a slow write of another key
		read("B", "k2", "", 450, 460),        // old state: still current
		{Node: "A", Key: "k1", Kind: Set, Value: "k1@v4", Inv: msd(400), Resp: msd(401), Failed: true},
		read("B", "k1", "k1@v4", 402, 403), // a failed write's value may be read
		read("B", "k1", "", 2000, 2001),    // state 3 never ended: the failed write replaces nothing
	}
	res := Check(ops, bound)
	for _, v := range res.Violations {
		t.Errorf("unexpected violation: %v", v)
	}
	if res.Reads != 11 || res.Writes != 5 {
		t.Errorf("counted %d reads, %d writes; want 11, 5", res.Reads, res.Writes)
	}
	if want := msd(99.9); res.MaxStaleness != want || res.Worst.Inv != msd(204.9) {
		t.Errorf("max staleness %v at %v; want %v at 204.9ms", res.MaxStaleness, res.Worst, want)
	}
}

// TestCheckRejects: each history breaks the bound once, in one way, and
// Check names that way and the read.
func TestCheckRejects(t *testing.T) {
	cases := []struct {
		name string
		ops  []Op
		what string
		at   float64 // the offending operation's invocation
	}{
		{"stale read beyond the bound", []Op{
			set("A", "k", "k@v1", 0, 1),
			set("A", "k", "k@v2", 10, 12),
			read("B", "k", "k@v1", 112.5, 113), // 100.5 ms after v2 returned
		}, Stale, 112.5},
		{"stale absent beyond the bound", []Op{
			set("A", "k", "k@v1", 10, 12),
			read("B", "k", "", 150, 151),
		}, Stale, 150},
		{"stale: judged from the earliest later write", []Op{
			set("A", "k", "k@v1", 0, 1),
			set("A", "k", "k@v2", 10, 12),
			{Node: "A", Key: "k", Kind: Set, Value: "k@v3", Inv: msd(20), Resp: msd(25), Failed: true},
			set("A", "k", "k@v4", 30, 40),
			read("B", "k", "k@v1", 113, 114), // v2 ended nothing later than 12 ms
		}, Stale, 113},
		{"a value never written", []Op{
			set("A", "k", "k@v1", 0, 1),
			read("B", "k", "k@v7", 5, 6),
		}, NeverWritten, 5},
		{"another key's value", []Op{
			set("A", "j", "j@v1", 0, 1),
			read("B", "k", "j@v1", 5, 6),
		}, NeverWritten, 5},
		{"a value read before its write began", []Op{
			read("B", "k", "k@v1", 5, 6),
			set("A", "k", "k@v1", 7, 8),
		}, NeverWritten, 5},
		{"lost own write", []Op{
			set("A", "k", "k@v1", 0, 1),
			set("A", "k", "k@v2", 10, 12),
			read("A", "k", "k@v1", 13, 14), // fresh enough for another node, not for A
		}, LostOwnWrite, 13},
		{"lost own delete", []Op{
			set("A", "k", "k@v1", 0, 1),
			del("A", "k", 10, 12),
			read("A", "k", "k@v1", 13, 14),
		}, LostOwnWrite, 13},
		{"absent before own set, absent only in older states", []Op{
			del("B", "k", 0, 1),
			set("A", "k", "k@v2", 10, 12),
			read("A", "k", "", 13, 14),
		}, LostOwnWrite, 13},
		{"overlapping writes of a key", []Op{
			set("A", "k", "k@v1", 0, 10),
			set("B", "k", "k@v2", 5, 15),
		}, Malformed, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := Check(c.ops, bound)
			if len(res.Violations) != 1 {
				t.Fatalf("%d violations; want 1: %v", len(res.Violations), res.Violations)
			}
			v := res.Violations[0]
			if v.What != c.what || v.Op.Inv != msd(c.at) {
				t.Fatalf("violation %v; want %q at %vms", v, c.what, c.at)
			}
			if c.what != Malformed && c.what != NeverWritten && !strings.Contains(v.String(), v.Op.String()) {
				t.Errorf("report lacks the read: %v", v)
			}
			t.Log(v)
		})
	}
}

// TestCheckExcerptShowsTheReplacingWrite: a stale read's report shows the
// write that made the state, the one that replaced it, and the staleness.
func TestCheckExcerptShowsTheReplacingWrite(t *testing.T) {
	ops := []Op{
		set("A", "k", "k@v1", 0, 1),
		set("C", "k", "k@v2", 10, 12),
		read("B", "k", "k@v1", 200, 201),
	}
	res := Check(ops, bound)
	if len(res.Violations) != 1 {
		t.Fatalf("violations %v; want 1", res.Violations)
	}
	s := res.Violations[0].String()
	for _, want := range []string{"k@v1", "C set    k k@v2", "B read   k k@v1", "188ms"} {
		if !strings.Contains(s, want) {
			t.Errorf("report %q lacks %q", s, want)
		}
	}
}
