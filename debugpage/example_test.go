package debugpage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/tiercache/tiercache/debugpage"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
)

// Example mounts the page for an L1-only cache built by hand and reads it
// as JSON. A service with a tiercache.Group calls page.AddGroup instead.
func Example() {
	l1, _ := local.New[string]()
	users, _ := tiered.New[string]("users", l1, nil)
	defer users.Close()

	page, _ := debugpage.New(debugpage.WithTitle("my service"))
	defer page.Close()
	page.AddCache(users)

	mux := http.NewServeMux()
	mux.Handle("GET /debug/tiercache", page)

	load := func(_ context.Context, id string) (string, error) { return "user " + id, nil }
	for range 3 {
		_, _ = users.GetOrLoad(context.Background(), "42", load)
	}

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/tiercache?format=json", nil))
	var v debugpage.View
	_ = json.Unmarshal(rec.Body.Bytes(), &v)
	c := v.Caches[0]
	fmt.Println(rec.Header().Get("Content-Type"))
	fmt.Println(c.Name, "L1 requests:", c.Recent.L1.Requests, "loads:", c.Recent.Loads)
	// Output:
	// application/json
	// users L1 requests: 3 loads: 1
}
