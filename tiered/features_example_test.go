package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
)

// A loader sets the TTL of the value it returns on the context it is given;
// a loader that does not care changes nothing.
func ExampleSetTTL() {
	l1, _ := local.New[string](local.WithMaxEntries(1000))
	prices, err := tiered.New[string]("prices", l1, nil, tiered.WithRemoteTTL(time.Hour))
	if err != nil {
		panic(err)
	}
	defer prices.Close()

	findPrice := func(ctx context.Context, sku string) (string, error) {
		if sku == "flash-sale" {
			// A volatile row: 5 seconds instead of the cache's hour.
			if err := tiered.SetTTL(ctx, 5*time.Second); err != nil {
				return "", err
			}
		}
		return "price of " + sku, nil
	}
	ctx := context.Background()
	p, err := prices.GetOrLoad(ctx, "flash-sale", findPrice)
	fmt.Println(p, err)

	// A bad TTL fails the load instead of being ignored.
	_, err = prices.GetOrLoad(ctx, "broken", func(ctx context.Context, sku string) (string, error) {
		tiered.SetTTL(ctx, -time.Second)
		return "never cached", nil
	})
	fmt.Println(errors.Is(err, tiered.ErrInvalidTTL))
	// Output:
	// price of flash-sale <nil>
	// true
}

// A batch loader sets TTLs per key with SetKeyTTL (SetTTL sets them all).
func ExampleSetKeyTTL() {
	l1, _ := local.New[string](local.WithMaxEntries(1000))
	rows, err := tiered.New[string]("rows", l1, nil)
	if err != nil {
		panic(err)
	}
	defer rows.Close()

	findRows := func(ctx context.Context, ids []string) (map[string]string, error) {
		out := make(map[string]string, len(ids))
		for _, id := range ids {
			if id == "static" {
				if err := tiered.SetKeyTTL(ctx, id, 24*time.Hour); err != nil {
					return nil, err
				}
			}
			out[id] = "row " + id
		}
		return out, nil
	}
	m, err := rows.GetOrLoadMany(context.Background(), []string{"static", "volatile"}, findRows)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Println(k, "=", m[k])
	}
	fmt.Println(err)
	// Output:
	// static = row static
	// volatile = row volatile
	// <nil>
}

// Set and SetMany take a TTL per call.
func ExampleTTL() {
	l1, _ := local.New[string](local.WithMaxEntries(1000))
	sessions, err := tiered.New[string]("sessions", l1, nil)
	if err != nil {
		panic(err)
	}
	defer sessions.Close()

	ctx := context.Background()
	fmt.Println(sessions.Set(ctx, "s1", "alice", tiered.TTL(15*time.Minute)))
	fmt.Println(sessions.SetMany(ctx, map[string]string{"s2": "bob", "s3": "carol"}, tiered.TTL(time.Minute)))
	l1.Wait()
	v, ok, _ := sessions.Get(ctx, "s3")
	fmt.Println(v, ok)
	fmt.Println(errors.Is(sessions.Set(ctx, "s4", "dave", tiered.TTL(0)), tiered.ErrInvalidTTL))
	// Output:
	// <nil>
	// <nil>
	// carol true
	// true
}

// A loader tags the value it returns; InvalidateTags drops every value with
// the tag, on every node, without knowing their keys.
func ExampleCache_InvalidateTags() {
	l1, _ := local.New[string](local.WithMaxEntries(1000))
	products, err := tiered.New[string]("products", l1, nil)
	if err != nil {
		panic(err)
	}
	defer products.Close()

	loads := 0
	findProduct := func(ctx context.Context, id string) (string, error) {
		loads++
		brand := "acme"
		if id == "3" {
			brand = "globex"
		}
		if err := tiered.SetTags(ctx, "brand:"+brand); err != nil {
			return "", err
		}
		return brand + " product " + id, nil
	}
	ctx := context.Background()
	for _, id := range []string{"1", "2", "3"} {
		products.GetOrLoad(ctx, id, findProduct)
	}
	l1.Wait()
	fmt.Println("loads:", loads)

	// Acme changed its catalogue: drop its products everywhere.
	fmt.Println(products.InvalidateTags(ctx, "brand:acme"))
	for _, id := range []string{"1", "2", "3"} {
		_, ok, _ := products.Get(ctx, id)
		fmt.Println(id, ok)
	}
	// Set and SetMany take tags too.
	fmt.Println(products.Set(ctx, "4", "acme product 4", tiered.Tags("brand:acme")))
	// Output:
	// loads: 3
	// <nil>
	// 1 false
	// 2 false
	// 3 true
	// <nil>
}
