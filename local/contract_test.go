package local_test

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered/driver"
	"github.com/tiercache/tiercache/tiered/drivertest"
)

func TestContract(t *testing.T) {
	drivertest.RunLocal(t, drivertest.LocalSuite[string]{
		New: func(t *testing.T) driver.Local[string] {
			s, err := local.New[string]()
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Nil: (*local.Store[string])(nil),
		KeepStale: func(t *testing.T, d time.Duration) driver.Local[string] {
			s, err := local.New[string](local.WithKeepStale(d))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Wait: func(s driver.Local[string]) { s.(*local.Store[string]).Wait() },
	})
}

// TestContractStruct runs the suite with a non-string value type.
func TestContractStruct(t *testing.T) {
	type user struct {
		ID   int
		Tags []string
	}
	drivertest.RunLocal(t, drivertest.LocalSuite[user]{
		New: func(t *testing.T) driver.Local[user] {
			s, err := local.New[user]()
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Value: func(i int) user { return user{ID: i, Tags: []string{"t"}} },
		Wait:  func(s driver.Local[user]) { s.(*local.Store[user]).Wait() },
	})
}
