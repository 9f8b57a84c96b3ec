package middleware_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/middleware"
	"github.com/tiercache/tiercache/tiered"
)

// An in-memory (L1-only) cache in front of a handler. In production, give
// the tiered cache a remote.Store (with middleware.Codec) and an
// invalidation bus, so every replica shares entries and purges.
func Example() {
	l1, _ := local.New[*middleware.Response](local.WithMaxCost(64<<20), local.WithCost((*middleware.Response).Size))
	pages, _ := tiered.New[*middleware.Response]("http", l1, nil, tiered.WithLocalTTL(time.Minute))
	defer pages.Close()
	mw, err := middleware.New(pages)
	if err != nil {
		panic(err)
	}
	defer mw.Close()

	calls := 0
	products := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Surrogate-Key", "product-42")
		io.WriteString(w, "product 42")
	})
	h := mw.Handler(products)

	get := func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://shop.example/products/42", nil))
		fmt.Printf("%s | %s\n", w.Body, w.Header().Get("Cache-Status"))
	}
	get()
	get()
	_ = mw.PurgeTag(context.Background(), "product-42")
	get()
	fmt.Println("origin calls:", calls)
	// Output:
	// product 42 | tiercache; fwd=uri-miss; stored
	// product 42 | tiercache; hit
	// product 42 | tiercache; fwd=stale; stored
	// origin calls: 2
}
