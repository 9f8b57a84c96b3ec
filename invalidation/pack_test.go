package invalidation

import (
	"strings"
	"testing"
	"time"
)

func TestPackRespectsLimits(t *testing.T) {
	big := strings.Repeat("x", MaxKeyLen)
	var many []string
	for i := range 2*MaxKeysPerMessage + 1 {
		many = append(many, "k"+strings.Repeat("y", i%50))
	}
	reqs := []*request{
		{kind: kindKeys, namespace: "a", keys: many},
		{kind: kindKeys, namespace: "b", keys: []string{big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big, big}},
		{kind: kindFlush, namespace: "a"},
		{kind: kindKeys, namespace: "a", keys: []string{"last"}},
	}
	msgs := pack(reqs)
	perNS := map[string]int{}
	for i, m := range msgs {
		data := appendMessage(nil, &m.msg)
		if len(data) > MaxMessageSize || len(m.msg.Keys) > MaxKeysPerMessage {
			t.Errorf("message %d: %d bytes, %d keys; over the limits", i, len(data), len(m.msg.Keys))
		}
		if m.size < len(data) {
			t.Errorf("message %d: size estimate %d below the real %d bytes", i, m.size, len(data))
		}
		perNS[m.msg.Namespace] += len(m.msg.Keys)
	}
	if perNS["a"] != len(many)+1 || perNS["b"] != 17 {
		t.Errorf("keys per namespace = %v, want a:%d b:17", perNS, len(many)+1)
	}
	// Every request points at messages holding its keys.
	for i, r := range reqs {
		got := map[string]bool{}
		for _, j := range r.msgs {
			if msgs[j].msg.Namespace != r.namespace || msgs[j].msg.Kind != r.kind {
				t.Errorf("request %d points at a %v message of %q", i, msgs[j].msg.Kind, msgs[j].msg.Namespace)
			}
			for _, k := range msgs[j].msg.Keys {
				got[k] = true
			}
		}
		for _, k := range r.keys {
			if !got[k] {
				t.Errorf("request %d: key of %d bytes not in its messages", i, len(k))
				break
			}
		}
	}
	// a: 8193 keys in 3 messages, and "last" joins the third; b: 17 keys of
	// 16 KiB need 2 messages of at most 256 KiB; 1 flush.
	if got, want := len(msgs), 3+2+1; got != want {
		t.Errorf("%d messages, want %d", got, want)
	}
}

func TestLagHistogram(t *testing.T) {
	var c counters
	for _, d := range []time.Duration{0, 40 * time.Microsecond, 50 * time.Microsecond, 51 * time.Microsecond,
		900 * time.Microsecond, 3 * time.Millisecond, time.Minute} {
		c.observeLag(d)
	}
	h := c.snapshot().Lag
	want := map[int]uint64{0: 3, 1: 1, 4: 1, 6: 1, len(lagBounds): 1}
	for i, n := range h.Counts {
		if n != want[i] {
			t.Errorf("bucket %d (≤ %v) = %d, want %d", i, h.Bounds()[min(i, len(lagBounds)-1)], n, want[i])
		}
	}
	if got := h.Total(); got != 7 {
		t.Errorf("Total = %d, want 7", got)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 50 * time.Microsecond},
		{0.5, 100 * time.Microsecond},
		{0.99, 5 * time.Second},
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := (LagHistogram{}).Quantile(0.5); got != 0 {
		t.Errorf("Quantile of an empty histogram = %v, want 0", got)
	}
}
