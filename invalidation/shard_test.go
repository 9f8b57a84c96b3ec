package invalidation

import (
	"strings"
	"testing"
)

func TestSlot(t *testing.T) {
	tests := []struct {
		key  string
		want uint16
	}{
		{"123456789", 0x31C3 % clusterSlots}, // the CRC-16/XMODEM check value
		{"foo", 12182},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"foo{}{bar}", slot("foo{}{bar}")}, // empty tag: the whole key
		{"{}", 15257},
	}
	for _, tt := range tests {
		if got := slot(tt.key); got != tt.want {
			t.Errorf("slot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
	if got, want := slot("foo{}{bar}"), crc16("foo{}{bar}")%clusterSlots; got != want {
		t.Errorf("slot with empty tag = %d, want the hash of the whole key %d", got, want)
	}
}

func TestChannelNamesSpreadOverSlots(t *testing.T) {
	for _, n := range []int{1, 3, 16, 100, MaxShards} {
		names := channelNames("tiercache:inv", n)
		if len(names) != n {
			t.Fatalf("n=%d: %d names", n, len(names))
		}
		for i, name := range names {
			if !strings.HasPrefix(name, "tiercache:inv:{") {
				t.Fatalf("name %q lacks the prefix", name)
			}
			s := int(slot(name))
			if lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n; s < lo || s >= hi {
				t.Errorf("n=%d: channel %d %q on slot %d, want [%d, %d)", n, i, name, s, lo, hi)
			}
		}
	}
	a, b := channelNames("app-a", 16), channelNames("app-b", 16)
	same := 0
	for i := range a {
		if slot(a[i]) == slot(b[i]) {
			same++
		}
	}
	if same > 2 {
		t.Errorf("prefixes app-a and app-b share %d of 16 slots; the prefix should seed the tags", same)
	}
}

func TestChannelNamesMatchServerSlots(t *testing.T) {
	c := clusterClient(t)
	ctx := ctxT(t)
	for _, name := range channelNames(DefaultChannelPrefix, DefaultShardedShards) {
		got, err := c.ClusterKeySlot(ctx, name).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(slot(name)); got != want {
			t.Errorf("CLUSTER KEYSLOT %s = %d, we computed %d", name, got, want)
		}
	}
}

func TestShardOfIsStable(t *testing.T) {
	if got := shardOf("ns", "key", 1); got != 0 {
		t.Errorf("shardOf with 1 shard = %d", got)
	}
	seen := make(map[int]bool)
	for i := range 1000 {
		k := strings.Repeat("k", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		s := shardOf("users", k, 16)
		if s != shardOf("users", k, 16) {
			t.Fatalf("shardOf(%q) not stable", k)
		}
		seen[s] = true
	}
	if len(seen) != 16 {
		t.Errorf("1000 keys used %d of 16 shards", len(seen))
	}
}
