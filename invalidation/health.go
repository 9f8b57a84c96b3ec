package invalidation

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/tiercache/tiercache/internal/bushook"
)

// Liveness and health (DESIGN §6.3).
//
// Every bus announces itself once per heartbeat interval on one channel
// (announce): its origin id, its sequence number on every channel it has
// used, and the namespaces it can write. An idle cluster of N buses so costs
// N messages per interval, whatever the number of channels. From the
// announcements of the others a bus learns
//
//   - who is alive: an origin silent for SilenceIntervals intervals is gone,
//     and the caches of the namespaces it announced are flushed once;
//   - what it should have received: a sequence number announced for a
//     channel must arrive there within the lag limit, or the messages in
//     between were lost (or are late): the origin's namespaces are flushed
//     and the subscription renewed.
//
// From its own announcements coming back it learns that its subscription
// works: healthy means proven. When the newest announcement it sent more
// than a lag limit ago has not come back (the subscription is dead, stuck
// behind a half-open link, or lagging), or a subscription is being renewed,
// the bus is unhealthy: it flushes every cache at once and again every D/2
// while it stays unhealthy, so no L1 entry lives longer than D, and once
// more when it is healthy again.

// announceLoop is the announcer goroutine: one announcement at once, then
// one per heartbeat interval; at Close, once the publishers stopped, a last
// one marked leaving.
func (b *Bus) announceLoop(ctx context.Context) {
	defer b.wg.Done()
	// The first announcement once the announcement channel is subscribed,
	// so that it can come back.
	select {
	case <-b.subs[0].ready:
	case <-ctx.Done():
		b.pubWG.Wait()
		return
	}
	b.sendAnnouncement(ctx, false)
	t := b.clock.NewTicker(b.cfg.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.pubWG.Wait()
			lctx, cancel := b.leaveContext(ctx)
			defer cancel()
			if lctx.Err() == nil {
				b.sendAnnouncement(lctx, true)
			}
			return
		case <-t.C():
		}
		b.sendAnnouncement(ctx, false)
		b.annRounds.Add(1)
	}
}

// announcement builds this bus's announcement.
func (b *Bus) announcement(leaving bool) message {
	m := message{
		Origin:      b.origin,
		Seq:         b.annSeq.Add(1),
		Kind:        kindAnnounce,
		Leaving:     leaving,
		PublishedAt: b.clock.Now().UnixNano(),
	}
	b.regMu.RLock()
	for ns := range b.regs {
		m.Keys = append(m.Keys, ns)
	}
	for ns := range b.written {
		if _, ok := b.regs[ns]; !ok {
			m.Keys = append(m.Keys, ns)
		}
	}
	b.regMu.RUnlock()
	slices.Sort(m.Keys)
	// Bounded by the message size: namespaces past it go unannounced (a
	// silent origin then flushes less than it should; 256 KiB holds
	// at least a thousand namespaces).
	size := encodedSize("", nil) + 16*len(b.pubs)
	for i, ns := range m.Keys {
		size += keySize(ns)
		if size > MaxMessageSize {
			m.Keys = m.Keys[:i]
			break
		}
	}
	for i, p := range b.pubs {
		if seq := p.seq.Load(); seq > 0 {
			m.Seqs = append(m.Seqs, chanSeq{Index: i, Seq: seq})
		}
	}
	return m
}

func (b *Bus) sendAnnouncement(ctx context.Context, leaving bool) {
	m := b.announcement(leaving)
	if b.dropped(true, &m) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.publishTimeout)
	defer cancel()
	if err := b.publishCmd(ctx, b.client, b.announce, appendMessage(nil, &m)).Err(); err != nil {
		b.stats.publishErrors.Add(1)
		b.log.Debug("invalidation: announcement failed", "channel", b.announce, "error", err)
		return
	}
	b.stats.announcementsSent.Add(1)
}

// handleAnnouncement applies an announcement received on the announcement
// channel.
func (b *Bus) handleAnnouncement(m *message) {
	now := b.since()
	if m.Origin == b.origin {
		sent := time.Unix(0, m.PublishedAt).Sub(b.epoch)
		lag := now - sent
		if lag <= b.cfg.lagLimit && sent > time.Duration(b.proofSent.Load()) {
			b.proofSent.Store(int64(sent))
			b.proofLag.Store(int64(lag))
			b.provedOne.Do(func() { close(b.proved) })
		}
		return
	}
	b.stats.announcementsReceived.Add(1)
	b.originsMu.Lock()
	o := b.origins[m.Origin]
	if o == nil {
		o = &originState{}
		b.origins[m.Origin] = o
	}
	o.heard = now
	o.silent = false
	if !slices.Equal(o.namespaces, m.Keys) {
		o.namespaces = make([]string, len(m.Keys))
		for i, ns := range m.Keys {
			o.namespaces[i] = strings.Clone(ns)
		}
	}
	if m.Leaving {
		o.leaving = now
	}
	b.originsMu.Unlock()
	for _, e := range m.Seqs {
		if e.Index < len(b.subs) {
			b.subs[e.Index].expect(m.Origin, e.Seq, now+b.cfg.lagLimit)
		}
	}
}

// watch is the watchdog goroutine: four times per heartbeat interval it
// judges the bus's health, checks announced sequence numbers against what
// arrived, and looks for silent origins. It never waits on the network:
// renewing a subscription is the resetter's job.
func (b *Bus) watch(ctx context.Context) {
	defer b.wg.Done()
	t := b.clock.NewTicker(b.tick())
	defer t.Stop()
	var (
		unhealthy bool
		lastFlush time.Duration // of the flushes while unhealthy
		lastReset time.Duration
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		now := b.since()

		// Health.
		proof := max(time.Duration(b.proofSent.Load()), 0)
		reason := ""
		if now-proof > b.cfg.heartbeat+b.cfg.lagLimit {
			reason = "own announcements not back in time"
		}
		for _, s := range b.subs {
			if s.down.Load() {
				reason = "subscription " + s.channel + " down"
				break
			}
		}
		switch {
		case reason != "" && !unhealthy:
			unhealthy, lastFlush, lastReset = true, now, now
			b.healthy.Store(false)
			b.stats.unhealthy.Add(1)
			b.log.Warn("invalidation: bus unhealthy; flushing, and flushing again every D/2 until it recovers",
				"reason", reason, "since_proof", now-proof, "D", b.DetectionTime())
			b.flushAll(reasonUnhealthy)
			b.requestReset(0)
		case reason != "":
			if now-lastFlush >= b.DetectionTime()/2 {
				lastFlush = now
				b.flushAll(reasonUnhealthy)
			}
			if now-lastReset >= b.silence() {
				lastReset = now
				b.requestReset(0)
			}
		case unhealthy:
			unhealthy = false
			b.healthy.Store(true)
			b.log.Info("invalidation: bus healthy again; flushing what was cached meanwhile")
			b.flushAll(reasonUnhealthy)
			// Whoever we could not hear while unhealthy gets a fresh
			// silence window.
			b.originsMu.Lock()
			for _, o := range b.origins {
				o.heard = max(o.heard, now)
			}
			b.originsMu.Unlock()
		}

		// Announced sequence numbers that did not arrive in time.
		for _, s := range b.subs {
			for _, o := range s.overdue(now) {
				b.stats.gaps.Add(1)
				b.log.Warn("invalidation: announced messages did not arrive in time; flushing", "channel", s.channel, "origin", o)
				b.flushOrigin(o, reasonGap, "")
				b.requestReset(s.index)
			}
		}

		// Silent and departed origins.
		var silent [][]string
		var gone []uint64
		b.originsMu.Lock()
		for id, o := range b.origins {
			idle := now - o.heard
			switch {
			case o.leaving != 0 && now-o.leaving > b.cfg.lagLimit+b.tick():
				delete(b.origins, id)
				gone = append(gone, id)
			case o.silent && idle > forgetAfter*b.silence():
				delete(b.origins, id)
				gone = append(gone, id)
			case !o.silent && !unhealthy && o.leaving == 0 && idle > b.silence():
				o.silent = true
				silent = append(silent, o.namespaces)
			}
		}
		b.originsMu.Unlock()
		for _, ns := range silent {
			b.log.Warn("invalidation: a bus fell silent; flushing the namespaces it announced", "namespaces", ns)
			b.countFlush(reasonSilence)
			b.flushNamespaces(ns)
		}
		for _, id := range gone {
			for _, s := range b.subs {
				s.forget(id)
			}
		}
		b.watchRuns.Add(1)
	}
}

// forgetAfter is how many silence periods a silent origin is remembered, so
// that a gap across its silence is still seen should it speak again.
const forgetAfter = 100

// dropped applies the test hook; it reports whether m is to be dropped.
func (b *Bus) dropped(outgoing bool, m *message) bool {
	if b.cfg.hooks.Drop == nil {
		return false
	}
	if b.cfg.hooks.Drop(outgoing, hookMsg(m)) {
		b.stats.dropped.Add(1)
		return true
	}
	return false
}

// hookMsg is what the test hook sees of m.
func hookMsg(m *message) bushook.Msg {
	return bushook.Msg{Kind: uint8(m.Kind), Origin: m.Origin, Seq: m.Seq, Namespace: m.Namespace, Keys: m.Keys}
}
