package memremote_test

import (
	"context"
	"fmt"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver/memremote"
)

// Two caches of one process share an in-memory L2: the second finds in it
// what the first loaded, without calling its loader.
func Example() {
	l2, err := memremote.New()
	if err != nil {
		panic(err)
	}
	newCache := func() *tiered.Cache[string] {
		l1, _ := local.New[string]()
		c, err := tiered.New[string]("names", l1, l2)
		if err != nil {
			panic(err)
		}
		return c
	}
	a, b := newCache(), newCache()
	defer a.Close()
	defer b.Close()

	ctx := context.Background()
	load := func(who string) tiered.Loader[string] {
		return func(ctx context.Context, key string) (string, error) {
			fmt.Println(who, "loads", key)
			return "user-" + key, nil
		}
	}
	v, _ := a.GetOrLoad(ctx, "42", load("a"))
	fmt.Println(v)
	v, _ = b.GetOrLoad(ctx, "42", load("b"))
	fmt.Println(v)
	// Output:
	// a loads 42
	// user-42
	// user-42
}
