package local_test

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/local"
)

// BenchmarkFillAfterWrite is the L1 work of a Set: invalidate the key, then
// fill it, with Fill (which waits for ristretto) and with FillWritten (which
// does not).
func BenchmarkFillAfterWrite(b *testing.B) {
	for _, tc := range []struct {
		name string
		fill func(s *local.Store[int], key string, gen uint64) bool
	}{
		{"Fill", func(s *local.Store[int], key string, gen uint64) bool { return s.Fill(key, 1, false, time.Minute, gen) }},
		{"FillWritten", func(s *local.Store[int], key string, gen uint64) bool {
			return s.FillWritten(key, 1, false, time.Minute, gen)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := local.New[int]()
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for b.Loop() {
				s.Invalidate("k")
				tc.fill(s, "k", s.Generation("k"))
			}
		})
	}
}
