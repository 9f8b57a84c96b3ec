package debugpage

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/driver"
)

// Defaults of the options.
const (
	// DefaultWindow is the span the hit ratios and rates cover.
	DefaultWindow = time.Minute
	// DefaultInterval is the time between two samples of the counters.
	DefaultInterval = 5 * time.Second
	// DefaultRecentFlushes is how many flush events a bus keeps.
	DefaultRecentFlushes = 20
)

// ErrInvalidOption is returned by New for an option it cannot use.
var ErrInvalidOption = errors.New("debugpage: invalid option")

// CacheSource is what the page reads from a cache: every *tiered.Cache[V]
// satisfies it, whatever V. It is an alias of an unnamed interface type,
// identical to tiercache.StatusSource, so that a tiercache.Group satisfies
// GroupSource without either package importing the other.
type CacheSource = interface{ Status() tiered.Status }

// BusSource is what the page reads from a bus: *invalidation.Bus satisfies
// it. A BusSource that also has the method Status() invalidation.Status
// (as *invalidation.Bus does) gets its channels, origins and health shown.
type BusSource interface {
	Stats() invalidation.Stats
}

// busStatuser is the optional part of a BusSource.
type busStatuser interface {
	Status() invalidation.Status
}

// GroupSource is a set of caches sharing a bus: *tiercache.Group satisfies
// it. Its caches are listed again at every sample and every request, so
// caches added to or closed in the group later show up or leave. Bus may
// return nil (a group without a bus).
type GroupSource interface {
	Caches() []CacheSource
	Bus() *invalidation.Bus
}

// Option configures a Page.
type Option func(*config) error

type config struct {
	window, interval time.Duration
	recentFlushes    int
	clock            driver.Clock
	title            string
}

// WithWindow sets the span the hit ratios, rates and lag quantiles cover.
// Default DefaultWindow (one minute). It must be at least the sampling
// interval.
func WithWindow(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: window %v must be positive", ErrInvalidOption, d)
		}
		c.window = d
		return nil
	}
}

// WithInterval sets the time between two samples of the counters: the
// resolution of the window and of the times of recent flushes. Default
// DefaultInterval (5 s). It must be positive.
func WithInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: interval %v must be positive", ErrInvalidOption, d)
		}
		c.interval = d
		return nil
	}
}

// WithRecentFlushes sets how many flush events the page keeps per bus.
// Default DefaultRecentFlushes (20). It must be positive.
func WithRecentFlushes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: recent flushes %d must be positive", ErrInvalidOption, n)
		}
		c.recentFlushes = n
		return nil
	}
}

// WithClock sets the page's time source (a driver.Clock, the one clock type
// of every tiercache package). Default: driver.SystemClock. Nil is an
// error.
func WithClock(c driver.Clock) Option {
	return func(cfg *config) error {
		if c == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalidOption)
		}
		cfg.clock = c
		return nil
	}
}

// WithTitle sets the heading of the HTML page (for instance the service's
// name). Default "tiercache".
func WithTitle(title string) Option {
	return func(c *config) error {
		c.title = title
		return nil
	}
}

// Page is the status page: an http.Handler showing the caches and buses
// added to it, in HTML (default) or JSON (?format=json). Create it with
// New, add sources with AddCache, AddBus and AddGroup, mount it (for
// instance at /debug/tiercache), and Close it at shutdown.
//
// A Page samples the counters of its sources every interval, on a goroutine
// it owns, and keeps the samples of the last window: the hit ratios it shows
// cover the last minute even when nobody looked at the page before. Sampling
// costs one Stats call per source per interval.
//
// A Page is safe for concurrent use.
type Page struct {
	cfg config

	mu     sync.Mutex
	caches []CacheSource
	buses  []namedBus
	groups []namedGroup
	hist   map[any]*history // by source
	closed bool

	stop chan struct{}
	done chan struct{}
}

type namedBus struct {
	name string
	bus  BusSource
}

type namedGroup struct {
	name  string
	group GroupSource
}

// New returns a Page and starts its sampling goroutine; Close stops it.
func New(opts ...Option) (*Page, error) {
	cfg := config{window: DefaultWindow, interval: DefaultInterval, recentFlushes: DefaultRecentFlushes, clock: driver.SystemClock, title: "tiercache"}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.window < cfg.interval {
		return nil, fmt.Errorf("%w: window %v is shorter than the interval %v", ErrInvalidOption, cfg.window, cfg.interval)
	}
	p := &Page{cfg: cfg, hist: make(map[any]*history), stop: make(chan struct{}), done: make(chan struct{})}
	ticker := cfg.clock.NewTicker(cfg.interval)
	ticks, stopTicker := ticker.C(), ticker.Stop
	go p.run(ticks, stopTicker)
	return p, nil
}

func (p *Page) run(ticks <-chan time.Time, stopTicker func()) {
	defer close(p.done)
	defer stopTicker()
	for {
		select {
		case <-p.stop:
			return
		case t := <-ticks:
			p.sample(t)
		}
	}
}

// AddCache shows c on the page and takes its first sample. Adding a source
// twice shows it once. A cache whose Status says Closed leaves the page.
func (p *Page) AddCache(c CacheSource) {
	if c == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Contains(p.caches, c) {
		p.caches = append(p.caches, c)
	}
	p.sampleCacheLocked(c, c.Status(), p.cfg.clock.Now())
}

// AddBus shows b on the page under name and takes its first sample.
func (p *Page) AddBus(name string, b BusSource) {
	if b == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.ContainsFunc(p.buses, func(nb namedBus) bool { return nb.bus == b }) {
		p.buses = append(p.buses, namedBus{name, b})
	}
	p.sampleBusLocked(b, p.cfg.clock.Now())
}

// AddGroup shows the caches and the bus of g on the page, the bus under
// name, and takes their first sample.
func (p *Page) AddGroup(name string, g GroupSource) {
	if g == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.ContainsFunc(p.groups, func(ng namedGroup) bool { return ng.group == g }) {
		p.groups = append(p.groups, namedGroup{name, g})
	}
	now := p.cfg.clock.Now()
	for _, c := range g.Caches() {
		p.sampleCacheLocked(c, c.Status(), now)
	}
	if b := g.Bus(); b != nil {
		p.sampleBusLocked(b, now)
	}
}

// Close stops the sampling goroutine and waits for it. The page still
// answers requests afterwards (from fresh snapshots and the samples it
// has). Close is idempotent and returns nil.
func (p *Page) Close() error {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.mu.Unlock()
	if !already {
		close(p.stop)
	}
	<-p.done
	return nil
}

// sources lists the caches and buses to show, in the order they were
// added (a group's caches and bus after the sources added before it). It
// drops closed caches from the page. Under p.mu.
func (p *Page) sourcesLocked() (caches []cacheRef, buses []namedBus) {
	live := p.caches[:0]
	for _, c := range p.caches {
		st := c.Status()
		if st.Closed {
			delete(p.hist, c)
			continue
		}
		live = append(live, c)
		caches = append(caches, cacheRef{c, st})
	}
	clear(p.caches[len(live):])
	p.caches = live
	buses = append(buses, p.buses...)
	for _, g := range p.groups {
		for _, c := range g.group.Caches() {
			if st := c.Status(); !st.Closed {
				caches = append(caches, cacheRef{c, st})
			}
		}
		if b := g.group.Bus(); b != nil {
			buses = append(buses, namedBus{g.name, b})
		}
	}
	return caches, buses
}

type cacheRef struct {
	src    CacheSource
	status tiered.Status
}

// sample takes one sample of every source, at now (the tick's time).
func (p *Page) sample(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	caches, buses := p.sourcesLocked()
	seen := make(map[any]bool, len(caches)+len(buses))
	for _, c := range caches {
		p.sampleCacheLocked(c.src, c.status, now)
		seen[c.src] = true
	}
	for _, b := range buses {
		p.sampleBusLocked(b.bus, now)
		seen[b.bus] = true
	}
	// Forget sources that left (closed caches, caches a group no longer has).
	for k := range p.hist {
		if !seen[k] {
			delete(p.hist, k)
		}
	}
}
