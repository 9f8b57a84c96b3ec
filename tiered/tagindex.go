package tiered

import (
	"sync"
	"time"
)

// tagIndex is a node's index from tags to the L1 keys of tagged entries. An
// entry is added before its L1 fill and kept for at least period (LocalTTL
// plus the load timeout: longer than its L1 copy can live), then forgotten:
// the index holds what was filled in the last two periods, and cannot drift
// beyond this process.
type tagIndex struct {
	mu        sync.Mutex
	period    time.Duration
	rotated   time.Time
	cur, prev map[string]map[string]struct{}
}

func (x *tagIndex) rotate(now time.Time) {
	if x.rotated.IsZero() {
		x.rotated = now
	}
	if now.Sub(x.rotated) < x.period {
		return
	}
	x.prev, x.cur = x.cur, nil
	if now.Sub(x.rotated) >= 2*x.period {
		x.prev = nil
	}
	x.rotated = now
}

func (x *tagIndex) add(key string, tags []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.rotate(time.Now())
	if x.cur == nil {
		x.cur = make(map[string]map[string]struct{})
	}
	for _, t := range tags {
		keys := x.cur[t]
		if keys == nil {
			keys = make(map[string]struct{})
			x.cur[t] = keys
		}
		keys[key] = struct{}{}
	}
}

// take returns the keys of tags and forgets them.
func (x *tagIndex) take(tags []string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.rotate(time.Now())
	var out []string
	for _, m := range []map[string]map[string]struct{}{x.cur, x.prev} {
		for _, t := range tags {
			for k := range m[t] {
				out = append(out, k)
			}
			delete(m, t)
		}
	}
	return out
}
