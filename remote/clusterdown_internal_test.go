package remote

import (
	"testing"
	"time"
)

// TestClusterDownHoldAndGrace checks the store's memory of CLUSTERDOWN
// replies: a timeout within clusterDownHold of the last reply counts as
// refused by the Cluster, and a refusal that has lasted clusterDownGrace
// no longer does (the Cluster is down for good).
func TestClusterDownHoldAndGrace(t *testing.T) {
	var d clusterDown
	t0 := time.Unix(1_700_000_000, 0).UnixNano()
	at := func(off time.Duration) int64 { return t0 + int64(off) }
	if d.refusing(at(0)) {
		t.Fatal("refusing before any CLUSTERDOWN")
	}
	if !d.saw(at(0)) {
		t.Fatal("a first CLUSTERDOWN is not a young refusal")
	}
	cases := []struct {
		at   time.Duration
		want bool
	}{
		{500 * time.Millisecond, true},
		{clusterDownHold, true},
		{clusterDownHold + time.Millisecond, false},
	}
	for _, c := range cases {
		if got := d.refusing(at(c.at)); got != c.want {
			t.Errorf("refusing %v after the only reply = %v, want %v", c.at, got, c.want)
		}
	}
	// Replies every 500 ms keep the refusal going, until the grace is
	// over.
	var off time.Duration
	for off = 500 * time.Millisecond; off < clusterDownGrace; off += 500 * time.Millisecond {
		if !d.saw(at(off)) {
			t.Fatalf("a reply %v into the refusal counted as down for good, want after %v", off, clusterDownGrace)
		}
	}
	if d.saw(at(off)) || d.refusing(at(off)) {
		t.Fatalf("a reply %v into the refusal is still a failover's; want down for good after %v", off, clusterDownGrace)
	}
	// After a pause longer than the hold, a new refusal starts afresh.
	off += clusterDownHold + time.Millisecond
	if !d.saw(at(off)) || !d.refusing(at(off)) {
		t.Fatal("a refusal after a pause did not start afresh")
	}
}
