package l1core

// Advance changes every generation, as a Flush does, without clearing any
// map: the moment of a Flush after its epoch moved and before the map's
// Clear returned. Tests use it to check that a store's Get hides entries
// of an older epoch.
func (g *Guard) Advance() { g.epoch.Add(1) }
