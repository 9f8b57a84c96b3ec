package local_test

import (
	"fmt"
	"time"

	"github.com/tiercache/tiercache/local"
)

// A Store bounded by entries, filled under the generation guard: a Fill
// that races with an Invalidate stores nothing.
func ExampleNew() {
	s, err := local.New[string](local.WithMaxEntries(10_000))
	if err != nil {
		panic(err)
	}
	defer s.Close()

	gen := s.Generation("user:42") // snapshot before reading the source
	s.Fill("user:42", "Ada", false, time.Minute, gen)
	v, absent, ok := s.Get("user:42")
	fmt.Println(v, absent, ok)

	stale := s.Generation("user:7")
	s.Invalidate("user:7") // lands between the read and the fill
	fmt.Println(s.Fill("user:7", "old value", false, time.Minute, stale))
	// Output:
	// Ada false true
	// false
}

// A Store bounded by the bytes its values take.
func ExampleWithMaxCost() {
	s, err := local.New[[]byte](
		local.WithMaxCost(64<<20), // 64 MiB
		local.WithCost(func(b []byte) int64 { return int64(len(b)) }))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	s.Fill("page", make([]byte, 1024), false, time.Minute, s.Generation("page"))
	fmt.Println(s.Stats().Cost)
	// Output: 1024
}
