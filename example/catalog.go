package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Product is a row of the catalog and the value the cache holds.
type Product struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
}

// errNoRows is the catalog's "row not found", like sql.ErrNoRows.
var errNoRows = errors.New("catalog: no rows")

// Catalog stands in for a database: an in-memory table whose every query
// takes a fixed delay and is counted. It is safe for concurrent use.
type Catalog struct {
	delay time.Duration

	mu   sync.RWMutex
	rows map[int]Product

	queries atomic.Uint64 // read queries (SELECTs)
	writes  atomic.Uint64 // write queries (UPDATEs, DELETEs)
}

// NewCatalog returns a catalog of n products with ids 1 to n, whose queries
// each take delay.
func NewCatalog(n int, delay time.Duration) *Catalog {
	adjectives := []string{"Blue", "Quiet", "Sturdy", "Tiny", "Golden", "Rapid", "Cozy", "Bright"}
	nouns := []string{"Widget", "Lamp", "Kettle", "Backpack", "Notebook", "Chair", "Mug", "Speaker", "Umbrella"}
	rows := make(map[int]Product, n)
	for id := 1; id <= n; id++ {
		rows[id] = Product{
			ID:         id,
			Name:       fmt.Sprintf("%s %s %d", adjectives[id%len(adjectives)], nouns[id%len(nouns)], id),
			PriceCents: 199 + int64(id*737%9800),
		}
	}
	return &Catalog{delay: delay, rows: rows}
}

// query simulates the round trip of one query.
func (c *Catalog) query(ctx context.Context) error {
	if c.delay <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(c.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Find returns the product with id, or errNoRows. It is one query.
func (c *Catalog) Find(ctx context.Context, id int) (Product, error) {
	c.queries.Add(1)
	if err := c.query(ctx); err != nil {
		return Product{}, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.rows[id]
	if !ok {
		return Product{}, errNoRows
	}
	return p, nil
}

// FindMany returns the products among ids, by id; absent ids are left out.
// It is one query (SELECT ... WHERE id IN (...)).
func (c *Catalog) FindMany(ctx context.Context, ids []int) (map[int]Product, error) {
	c.queries.Add(1)
	if err := c.query(ctx); err != nil {
		return nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[int]Product, len(ids))
	for _, id := range ids {
		if p, ok := c.rows[id]; ok {
			out[id] = p
		}
	}
	return out, nil
}

// Put inserts or replaces p and reports whether it created the row.
func (c *Catalog) Put(ctx context.Context, p Product) (created bool, err error) {
	c.writes.Add(1)
	if err := c.query(ctx); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, existed := c.rows[p.ID]
	c.rows[p.ID] = p
	return !existed, nil
}

// Delete removes the product with id, or returns errNoRows.
func (c *Catalog) Delete(ctx context.Context, id int) error {
	c.writes.Add(1)
	if err := c.query(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.rows[id]; !ok {
		return errNoRows
	}
	delete(c.rows, id)
	return nil
}

// Queries returns the number of read queries so far.
func (c *Catalog) Queries() uint64 { return c.queries.Load() }

// Writes returns the number of write queries so far.
func (c *Catalog) Writes() uint64 { return c.writes.Load() }

// Len returns the number of rows.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.rows)
}
