package local_test

import (
	"testing"

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
	})
}
