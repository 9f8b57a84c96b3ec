package tiered_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// Issue 9 observation 9: names that would collide or pin a slot are
// rejected, with the reason.
func TestStrictNames(t *testing.T) {
	l2, err := remote.New(redistest.Standalone(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, why := range map[string]string{
		"N:x":     "':'",
		"{tag}":   "hash tag",
		"a{b":     "hash tag",
		"a}b":     "hash tag",
		"a\x00b":  "control",
		"tab\tme": "control",
		"":        "empty",
	} {
		_, err := tiered.New[string](name, nil, l2)
		if !errors.Is(err, tiered.ErrInvalidOption) || !strings.Contains(err.Error(), why) {
			t.Errorf("New(%q) = %v; want ErrInvalidOption saying %q", name, err, why)
		}
	}
	c, err := tiered.New[string](redistest.Name(t), nil, l2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetOrLoad(context.Background(), "\x00refresh:k", func(context.Context, string) (string, error) { return "v", nil }); !errors.Is(err, tiered.ErrReservedKey) {
		t.Fatalf("GetOrLoad of a reserved key = %v, want ErrReservedKey", err)
	}
	if err := c.Set(context.Background(), "\x00x", "v"); !errors.Is(err, tiered.ErrReservedKey) {
		t.Fatalf("Set of a reserved key = %v, want ErrReservedKey", err)
	}
}
