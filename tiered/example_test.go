package tiered_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
)

// An L1-only cache runs in memory; add a remote.Store for the shared tier.
func Example() {
	l1, _ := local.New[string](local.WithMaxEntries(1000))
	names, err := tiered.New[string]("names", l1, nil)
	if err != nil {
		panic(err)
	}
	defer names.Close()

	queries := 0
	findName := func(ctx context.Context, id string) (string, error) {
		queries++
		if id == "0" {
			return "", tiered.ErrNotFound
		}
		return "user-" + id, nil
	}
	ctx := context.Background()
	for range 3 {
		name, _ := names.GetOrLoad(ctx, "42", findName)
		fmt.Println(name)
	}
	_, err = names.GetOrLoad(ctx, "0", findName)
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	fmt.Println("queries:", queries)
	// Output:
	// user-42
	// user-42
	// user-42
	// true
	// queries: 2
}

func ExampleCache_GetOrLoadMany() {
	l1, _ := local.New[int]()
	squares, _ := tiered.New[int]("squares", l1, nil)
	defer squares.Close()

	load := func(ctx context.Context, keys []string) (map[string]int, error) {
		fmt.Println("loading", keys)
		out := map[string]int{}
		for _, k := range keys {
			if k != "x" { // "x" is absent
				var n int
				fmt.Sscan(k, &n)
				out[k] = n * n
			}
		}
		return out, nil
	}
	ctx := context.Background()
	got, _ := squares.GetOrLoadMany(ctx, []string{"2", "3", "x"}, load)
	fmt.Println(got["2"], got["3"], len(got))
	// Output:
	// loading [2 3 x]
	// 4 9 2
}
