package local_test

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/localtest"
	"github.com/tiercache/tiercache/local"
)

func TestContract(t *testing.T) {
	localtest.Run(t, localtest.Suite{
		New: func(t *testing.T) localtest.Store {
			s, err := local.New[string]()
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Nil: (*local.Store[string])(nil),
		KeepStale: func(t *testing.T, d time.Duration) localtest.Store {
			s, err := local.New[string](local.WithKeepStale(d))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	})
}
