package invalidation

import "strconv"

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// channelNames returns the n channel names of the bus: prefix + ":{" + tag +
// "}". Channel i gets the first tag (in a sequence seeded by the prefix)
// whose hash slot falls in the i-th of n equal ranges of slots. A Cluster
// assigns slots to primaries in contiguous ranges, so the channels spread
// over the primaries as evenly as the slots do; seeding by the prefix puts
// buses with different prefixes on different slots. The names depend only
// on prefix and n, so every bus of a deployment computes the same ones.
func channelNames(prefix string, n int) []string {
	names := make([]string, n)
	seed := fnv64(prefix)
	for i := range names {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n
		for j := uint64(0); ; j++ {
			tag := strconv.FormatUint(seed+j, 36)
			if s := int(slot(tag)); s >= lo && s < hi {
				names[i] = prefix + ":{" + tag + "}"
				break
			}
		}
	}
	return names
}

// shardOf returns the channel that carries messages about key of namespace.
func shardOf(namespace, key string, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv64(namespace)
	h = fnvAdd(h, "\x00")
	h = fnvAdd(h, key)
	return int(h % uint64(n))
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv64(s string) uint64 { return fnvAdd(fnvOffset, s) }

// fnvAdd continues an FNV-1a hash over s; it does not allocate.
func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// slot returns the Redis Cluster hash slot of key, honouring hash tags.
func slot(key string) uint16 {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j > i+1 {
						key = key[i+1 : j]
					}
					return crc16(key) % clusterSlots
				}
			}
			break
		}
	}
	return crc16(key) % clusterSlots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021), the hash of Redis Cluster.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
