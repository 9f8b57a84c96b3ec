package drivertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered/driver"
)

// RemoteSuite describes a driver.Remote under test.
type RemoteSuite struct {
	// New returns the store under test. Stores returned by different calls
	// may share their data (one server): every subtest uses keys of its
	// own, under Prefix.
	New func(t *testing.T) driver.Remote
	// Prefix starts every key the suite uses; on a server other tests
	// share, make it unique to the run. Default "drivertest:".
	Prefix string
	// Clock is the clock the store's expiries and deadlines follow.
	// Default driver.SystemClock.
	Clock driver.Clock
	// Advance, when not nil, moves Clock forward by d (a store on a clock
	// the test controls). When nil, the expiry checks let real time pass,
	// polling until a short-lived entry is gone (a few hundred
	// milliseconds).
	Advance func(d time.Duration)
	// Unstorable, when not nil, is a payload the store can never store
	// (larger than its limit): writes of it must fail with an error marked
	// driver.UnstorableError and write nothing. Nil skips those checks.
	Unstorable []byte
	// Corrupt, when not nil, writes under key, behind the store's back, a
	// value the store cannot read (foreign or damaged bytes): reads must
	// treat it as a miss and delete it. Nil skips those checks.
	Corrupt func(t *testing.T, key string)
}

// RunRemote runs the contract checks of a driver.Remote as subtests of t,
// each named after the rule it checks, then those of the optional
// interfaces the store implements (driver.BatchWriter,
// driver.LeaseBatcher, driver.TagStore, driver.Sharder,
// driver.PublishCarrier); the checks of a capability the store lacks are
// skipped.
func RunRemote(t *testing.T, suite RemoteSuite) {
	t.Helper()
	if suite.New == nil {
		t.Fatal("drivertest: RemoteSuite.New is nil")
	}
	if suite.Prefix == "" {
		suite.Prefix = "drivertest:"
	}
	if suite.Clock == nil {
		suite.Clock = driver.SystemClock
	}
	r := &remoteRun{s: suite}
	for _, c := range []struct {
		name string
		f    func(t *testing.T, st driver.Remote)
	}{
		{"GetOfAMissingKeyIsKindNone", r.getMissing},
		{"GetReturnsTheEntrySetWroteForEveryKind", r.roundTrip},
		{"SetReplacesWhateverIsThereIncludingALease", r.setReplaces},
		{"SetPastItsDeadlineWritesNothingAndFails", r.setLate},
		{"SetBeforeItsDeadlineWrites", r.setInTime},
		{"EntryIsGoneOnceExpiresAtPassed", r.expiry},
		{"GetManyReturnsOneEntryPerKeyInOrder", r.getMany},
		{"DeleteRemovesKeysAndLeases", r.delete},
		{"AcquireOfAnEmptyKeyWritesTheLease", r.acquireEmpty},
		{"AcquireOfAHeldKeyWritesNothingAndReturnsWhatIsThere", r.acquireHeld},
		{"AcquireIsExclusiveUnderConcurrency", r.acquireExclusive},
		{"ExpiredLeaseFreesTheKey", r.leaseExpiry},
		{"CompareAndSwapReplacesOnlyAMatchingVersion", r.cas},
		{"CompareAndSwapAfterSetOrDeleteOfTheLeaseIsANoOp", r.casAfterWrite},
		{"CompareAndSwapIsExclusiveUnderConcurrency", r.casExclusive},
		{"CompareAndDeleteDeletesOnlyAMatchingVersion", r.cad},
		{"CorruptValueIsAMissAndIsDeleted", r.corrupt},
		{"UnmarshalReadsWhatMarshalWrote", r.codec},
		{"UnstorableValueFailsWithTheMarkAndWritesNothing", r.unstorable},
		{"BatchWriter/SetManyWritesEveryKeyWithOneErrorPerKey", r.setMany},
		{"BatchWriter/SetManyFencesEachKeyByItsDeadline", r.setManyFenced},
		{"BatchWriter/SetManyOfAnUnstorableValueFailsThatKeyAlone", r.setManyUnstorable},
		{"LeaseBatcher/AcquireManyIsAcquireOfEachKey", r.acquireMany},
		{"LeaseBatcher/AcquireManyIsExclusiveUnderConcurrency", r.acquireManyExclusive},
		{"LeaseBatcher/CompareAndSwapManyIsCompareAndSwapOfEachKey", r.casMany},
		{"TagStore/GenerationsOfMissingKeysAreZero", r.gensMissing},
		{"TagStore/EnsureGenerationsCreatesOnceThenKeeps", r.gensEnsure},
		{"TagStore/GetOrCreateGenerationReturnsTheExistingOne", r.gensGetOrCreate},
		{"TagStore/ConcurrentCreatorsAgreeOnOneGeneration", r.gensConcurrent},
		{"TagStore/BumpGenerationsGivesNewGenerations", r.gensBump},
		{"TagStore/EnsureGenerationsThenReadsThenAfterKeysExist", r.gensThen},
		{"TagStore/GenerationsLiveAtLeastTheirTTL", r.gensTTL},
		{"Sharder/ShardIsStableForAKey", r.shard},
		{"PublishCarrier/CarrierIsStableAndComparable", r.carrier},
		{"PublishCarrier/SetAndPublishWritesAsSet", r.setAndPublish},
		{"PublishCarrier/DeleteAndPublishDeletesAsDelete", r.deleteAndPublish},
	} {
		t.Run(c.name, func(t *testing.T) { c.f(t, suite.New(t)) })
	}
}

type remoteRun struct{ s RemoteSuite }

func (r *remoteRun) now() time.Time { return r.s.Clock.Now() }

// key returns a key of this subtest.
func (r *remoteRun) key(t *testing.T, name string) string {
	return r.s.Prefix + t.Name() + ":" + name
}

func (r *remoteRun) keys(t *testing.T, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = r.key(t, fmt.Sprint(i))
	}
	return ks
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// value returns an entry of kind KindValue living an hour.
func (r *remoteRun) value(payload string, version uint64) driver.Entry {
	return driver.Entry{Kind: driver.KindValue, Payload: []byte(payload), ExpiresAt: r.now().Add(time.Hour), LoadTime: 3 * time.Millisecond, Version: version}
}

// same reports whether got is the entry want as a store returns it: every
// field but Deadline (which is not stored), ExpiresAt to the millisecond.
func same(got, want driver.Entry) bool {
	return got.Kind == want.Kind && bytes.Equal(got.Payload, want.Payload) && got.Version == want.Version &&
		got.LoadTime == want.LoadTime && got.ExpiresAt.UnixMilli() == want.ExpiresAt.UnixMilli() && got.Deadline.IsZero()
}

func show(e driver.Entry) string {
	return fmt.Sprintf("{%v %q v%d load %v expires %v deadline %v}", e.Kind, e.Payload, e.Version, e.LoadTime, e.ExpiresAt.UnixMilli(), e.Deadline)
}

func (r *remoteRun) mustSet(t *testing.T, st driver.Remote, key string, e driver.Entry) {
	t.Helper()
	if err := st.Set(ctxOf(t), key, e); err != nil {
		t.Fatalf("Set(%q, %s): %v", key, show(e), err)
	}
}

func (r *remoteRun) mustGet(t *testing.T, st driver.Remote, key string) driver.Entry {
	t.Helper()
	e, err := st.Get(ctxOf(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return e
}

func (r *remoteRun) wantEntry(t *testing.T, st driver.Remote, key string, want driver.Entry) {
	t.Helper()
	if got := r.mustGet(t, st, key); !same(got, want) {
		t.Errorf("Get(%q) = %s, want %s", key, show(got), show(want))
	}
}

func (r *remoteRun) wantMiss(t *testing.T, st driver.Remote, key, why string) {
	t.Helper()
	if got := r.mustGet(t, st, key); got.Kind != driver.KindNone {
		t.Errorf("Get(%q) = %s after %s, want a miss (KindNone)", key, show(got), why)
	}
}

// pass lets time pass on the store's clock until an entry written to
// expire at short has expired: with Advance by advancing the clock, else
// by polling until probe (a key written to expire at short) is gone.
func (r *remoteRun) pass(t *testing.T, short time.Time, gone func() bool) {
	t.Helper()
	if r.s.Advance != nil {
		r.s.Advance(short.Sub(r.now()) + time.Second)
		return
	}
	eventually(t, "an entry to expire on the store's clock", gone)
}

func (r *remoteRun) getMissing(t *testing.T, st driver.Remote) {
	r.wantMiss(t, st, r.key(t, "never-written"), "no write")
}

func (r *remoteRun) roundTrip(t *testing.T, st driver.Remote) {
	for _, e := range []driver.Entry{
		r.value(`"v"`, 11),
		{Kind: driver.KindValue, Payload: []byte{}, ExpiresAt: r.now().Add(time.Hour), Version: 12},
		{Kind: driver.KindNotFound, ExpiresAt: r.now().Add(time.Hour), LoadTime: time.Second, Version: 13},
		{Kind: driver.KindLease, ExpiresAt: r.now().Add(time.Minute), Version: 14},
		{Kind: driver.KindFailed, Payload: []byte("load failed"), ExpiresAt: r.now().Add(time.Minute), Version: 15},
		{Kind: driver.KindTagged, Payload: []byte("\x01tag header then value"), ExpiresAt: r.now().Add(time.Hour), Version: 16},
		{Kind: driver.KindUnstorable, Payload: []byte("too large"), ExpiresAt: r.now().Add(time.Minute), Version: 17},
		{Kind: driver.KindValue, Payload: []byte("fenced"), ExpiresAt: r.now().Add(time.Hour), Version: 1<<64 - 1, Deadline: r.now().Add(time.Minute)},
	} {
		key := r.key(t, fmt.Sprint(e.Kind, e.Version))
		r.mustSet(t, st, key, e)
		r.wantEntry(t, st, key, e)
	}
}

func (r *remoteRun) setReplaces(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	key := r.key(t, "k")
	r.mustSet(t, st, key, r.value("one", 1))
	two := r.value("two", 2)
	r.mustSet(t, st, key, two)
	r.wantEntry(t, st, key, two)
	leased := r.key(t, "leased")
	if _, won, err := st.Acquire(ctx, leased, 77, r.now().Add(time.Minute)); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	r.mustSet(t, st, leased, two)
	r.wantEntry(t, st, leased, two)
}

func (r *remoteRun) setLate(t *testing.T, st driver.Remote) {
	key := r.key(t, "k")
	old := r.value("old", 1)
	r.mustSet(t, st, key, old)
	late := r.value("late", 2)
	late.Deadline = r.now().Add(-time.Second)
	if err := st.Set(ctxOf(t), key, late); err == nil {
		t.Error("Set with a deadline a second ago = nil, want an error")
	}
	r.wantEntry(t, st, key, old)
	empty := r.key(t, "empty")
	if err := st.Set(ctxOf(t), empty, late); err == nil {
		t.Error("Set of an empty key with a deadline a second ago = nil, want an error")
	}
	r.wantMiss(t, st, empty, "a Set past its deadline")
}

func (r *remoteRun) setInTime(t *testing.T, st driver.Remote) {
	key := r.key(t, "k")
	e := r.value("v", 3)
	e.Deadline = r.now().Add(time.Minute)
	r.mustSet(t, st, key, e)
	r.wantEntry(t, st, key, e)
}

func (r *remoteRun) expiry(t *testing.T, st driver.Remote) {
	short, long := r.key(t, "short"), r.key(t, "long")
	se := r.value("s", 1)
	se.ExpiresAt = r.now().Add(300 * time.Millisecond)
	r.mustSet(t, st, short, se)
	r.mustSet(t, st, long, r.value("l", 2))
	r.pass(t, se.ExpiresAt, func() bool { return r.mustGet(t, st, short).Kind == driver.KindNone })
	r.wantMiss(t, st, short, "its ExpiresAt passed")
	if e := r.mustGet(t, st, long); e.Kind != driver.KindValue {
		t.Errorf("Get of an entry an hour from its expiry = %s, want the value", show(e))
	}
}

func (r *remoteRun) getMany(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	keys := r.keys(t, 40)
	want := make([]driver.Entry, len(keys))
	for i, k := range keys {
		if i%3 == 2 {
			continue // a miss
		}
		want[i] = r.value(fmt.Sprint("v", i), uint64(i+1))
		r.mustSet(t, st, k, want[i])
	}
	got, err := st.GetMany(ctx, keys)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	if len(got) != len(keys) {
		t.Fatalf("GetMany of %d keys returned %d entries", len(keys), len(got))
	}
	for i := range keys {
		if !same(got[i], want[i]) {
			t.Errorf("GetMany entry %d = %s, want %s", i, show(got[i]), show(want[i]))
		}
	}
	if got, err := st.GetMany(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("GetMany of no key = %d entries, %v; want 0, nil", len(got), err)
	}
}

func (r *remoteRun) delete(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	keys := r.keys(t, 10)
	for _, k := range keys[:8] {
		r.mustSet(t, st, k, r.value("v", 1))
	}
	if _, won, err := st.Acquire(ctx, keys[8], 5, r.now().Add(time.Minute)); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	// keys[9] was never written: deleting a missing key is no error.
	if err := st.Delete(ctx, keys[1:]...); err != nil {
		t.Fatalf("Delete of %d keys: %v", len(keys)-1, err)
	}
	for _, k := range keys[1:] {
		r.wantMiss(t, st, k, "Delete")
	}
	if e := r.mustGet(t, st, keys[0]); e.Kind != driver.KindValue {
		t.Errorf("Get of a key Delete was not given = %s, want the value", show(e))
	}
	if err := st.Delete(ctx, keys[0]); err != nil {
		t.Fatalf("Delete of one key: %v", err)
	}
	r.wantMiss(t, st, keys[0], "Delete")
	if err := st.Delete(ctx); err != nil {
		t.Errorf("Delete of no key = %v, want nil", err)
	}
}

func (r *remoteRun) acquireEmpty(t *testing.T, st driver.Remote) {
	key := r.key(t, "k")
	exp := r.now().Add(time.Minute)
	if _, won, err := st.Acquire(ctxOf(t), key, 42, exp); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	r.wantEntry(t, st, key, driver.Entry{Kind: driver.KindLease, Version: 42, ExpiresAt: exp})
}

func (r *remoteRun) acquireHeld(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	lease := r.key(t, "lease")
	exp := r.now().Add(time.Minute)
	if _, won, err := st.Acquire(ctx, lease, 1, exp); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	cur, won, err := st.Acquire(ctx, lease, 2, r.now().Add(time.Hour))
	if err != nil || won {
		t.Fatalf("Acquire of another's lease = won %v, %v; want false, nil", won, err)
	}
	held := driver.Entry{Kind: driver.KindLease, Version: 1, ExpiresAt: exp}
	if !same(cur, held) {
		t.Errorf("Acquire of another's lease returned %s, want that lease %s", show(cur), show(held))
	}
	r.wantEntry(t, st, lease, held)
	for _, e := range []driver.Entry{
		r.value("v", 9),
		{Kind: driver.KindNotFound, ExpiresAt: r.now().Add(time.Hour), Version: 10},
		{Kind: driver.KindFailed, Payload: []byte("boom"), ExpiresAt: r.now().Add(time.Minute), Version: 11},
		{Kind: driver.KindUnstorable, Payload: []byte("big"), ExpiresAt: r.now().Add(time.Minute), Version: 12},
	} {
		key := r.key(t, e.Kind.String())
		r.mustSet(t, st, key, e)
		cur, won, err := st.Acquire(ctx, key, 3, r.now().Add(time.Minute))
		if err != nil || won || !same(cur, e) {
			t.Errorf("Acquire of a key holding %s = %s, won %v, %v; want that entry, false, nil", show(e), show(cur), won, err)
		}
		r.wantEntry(t, st, key, e)
	}
}

func (r *remoteRun) acquireExclusive(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	const n = 16
	for round := range 5 {
		key := r.key(t, fmt.Sprint(round))
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			won   [n]bool
			cur   [n]driver.Entry
			errs  [n]error
		)
		for i := range n {
			wg.Go(func() {
				<-start
				cur[i], won[i], errs[i] = st.Acquire(ctx, key, uint64(100+i), r.now().Add(time.Minute))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Acquire %d: %v", i, errs[i])
			}
			if won[i] {
				if winner >= 0 {
					t.Fatalf("round %d: Acquire %d and %d both won the lease", round, winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no Acquire of an empty key won", round)
		}
		for i := range n {
			if !won[i] && (cur[i].Kind != driver.KindLease || cur[i].Version != uint64(100+winner)) {
				t.Errorf("round %d: losing Acquire %d saw %s, want the winner's lease (token %d)", round, i, show(cur[i]), 100+winner)
			}
		}
	}
}

func (r *remoteRun) leaseExpiry(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	key := r.key(t, "k")
	exp := r.now().Add(300 * time.Millisecond)
	if _, won, err := st.Acquire(ctx, key, 1, exp); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	r.pass(t, exp, func() bool { return r.mustGet(t, st, key).Kind == driver.KindNone })
	if _, won, err := st.Acquire(ctx, key, 2, r.now().Add(time.Minute)); err != nil || !won {
		t.Fatalf("Acquire after the lease expired = won %v, %v; want true, nil", won, err)
	}
	if e := r.mustGet(t, st, key); e.Kind != driver.KindLease || e.Version != 2 {
		t.Errorf("Get after the second Acquire = %s, want the lease with token 2", show(e))
	}
}

func (r *remoteRun) cas(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	key := r.key(t, "k")
	if _, won, err := st.Acquire(ctx, key, 7, r.now().Add(time.Minute)); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	v1 := r.value("filled", 8)
	if ok, err := st.CompareAndSwap(ctx, key, 6, r.value("wrong", 9)); err != nil || ok {
		t.Errorf("CompareAndSwap with another version = %v, %v; want false, nil", ok, err)
	}
	r.wantEntry(t, st, key, driver.Entry{Kind: driver.KindLease, Version: 7, ExpiresAt: r.mustGet(t, st, key).ExpiresAt})
	if ok, err := st.CompareAndSwap(ctx, key, 7, v1); err != nil || !ok {
		t.Fatalf("CompareAndSwap with the lease's token = %v, %v; want true, nil", ok, err)
	}
	r.wantEntry(t, st, key, v1)
	// Any entry's Version is compared, not only a lease's.
	v2 := r.value("second", 10)
	if ok, err := st.CompareAndSwap(ctx, key, 8, v2); err != nil || !ok {
		t.Fatalf("CompareAndSwap with a value's version = %v, %v; want true, nil", ok, err)
	}
	r.wantEntry(t, st, key, v2)
	// An empty key holds no version, not even 0.
	empty := r.key(t, "empty")
	for _, version := range []uint64{0, 7} {
		if ok, err := st.CompareAndSwap(ctx, empty, version, v1); err != nil || ok {
			t.Errorf("CompareAndSwap(version %d) of an empty key = %v, %v; want false, nil", version, ok, err)
		}
	}
	r.wantMiss(t, st, empty, "a CompareAndSwap of the empty key")
}

func (r *remoteRun) casAfterWrite(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	set, del := r.key(t, "set"), r.key(t, "del")
	for _, k := range []string{set, del} {
		if _, won, err := st.Acquire(ctx, k, 21, r.now().Add(time.Minute)); err != nil || !won {
			t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
		}
	}
	written := r.value("written", 22)
	r.mustSet(t, st, set, written)
	if err := st.Delete(ctx, del); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{set, del} {
		if ok, err := st.CompareAndSwap(ctx, k, 21, r.value("stale load", 23)); err != nil || ok {
			t.Errorf("CompareAndSwap of a lease replaced by a write = %v, %v; want false, nil", ok, err)
		}
	}
	r.wantEntry(t, st, set, written)
	r.wantMiss(t, st, del, "a Delete and a CompareAndSwap with the deleted lease's token")
}

func (r *remoteRun) casExclusive(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	const n = 16
	key := r.key(t, "k")
	r.mustSet(t, st, key, r.value("start", 1))
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		swapped [n]bool
		errs    [n]error
	)
	for i := range n {
		wg.Go(func() {
			<-start
			swapped[i], errs[i] = st.CompareAndSwap(ctx, key, 1, r.value(fmt.Sprint("w", i), uint64(100+i)))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("CompareAndSwap %d: %v", i, errs[i])
		}
		if swapped[i] {
			if winner >= 0 {
				t.Fatalf("CompareAndSwap %d and %d both swapped version 1", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no CompareAndSwap of the current version swapped")
	}
	if e := r.mustGet(t, st, key); e.Version != uint64(100+winner) {
		t.Errorf("Get = %s, want the winner's entry (version %d)", show(e), 100+winner)
	}
}

func (r *remoteRun) cad(t *testing.T, st driver.Remote) {
	ctx := ctxOf(t)
	key := r.key(t, "k")
	v := r.value("v", 31)
	r.mustSet(t, st, key, v)
	if ok, err := st.CompareAndDelete(ctx, key, 30); err != nil || ok {
		t.Errorf("CompareAndDelete with another version = %v, %v; want false, nil", ok, err)
	}
	r.wantEntry(t, st, key, v)
	if ok, err := st.CompareAndDelete(ctx, key, 31); err != nil || !ok {
		t.Fatalf("CompareAndDelete with the entry's version = %v, %v; want true, nil", ok, err)
	}
	r.wantMiss(t, st, key, "CompareAndDelete")
	if ok, err := st.CompareAndDelete(ctx, key, 0); err != nil || ok {
		t.Errorf("CompareAndDelete(version 0) of an empty key = %v, %v; want false, nil", ok, err)
	}
	lease := r.key(t, "lease")
	if _, won, err := st.Acquire(ctx, lease, 32, r.now().Add(time.Minute)); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	if ok, err := st.CompareAndDelete(ctx, lease, 32); err != nil || !ok {
		t.Fatalf("CompareAndDelete with the lease's token = %v, %v; want true, nil", ok, err)
	}
	r.wantMiss(t, st, lease, "CompareAndDelete of the lease")
}

func (r *remoteRun) corrupt(t *testing.T, st driver.Remote) {
	if r.s.Corrupt == nil {
		t.Skip("RemoteSuite.Corrupt is nil")
	}
	ctx := ctxOf(t)
	get, many, acquire := r.key(t, "get"), r.keys(t, 5), r.key(t, "acquire")
	r.s.Corrupt(t, get)
	r.wantMiss(t, st, get, "a corrupt value was written")
	r.wantMiss(t, st, get, "Get found a corrupt value") // and it stays a miss
	for _, k := range many[1:4] {
		r.s.Corrupt(t, k)
	}
	v := r.value("v", 1)
	r.mustSet(t, st, many[0], v)
	got, err := st.GetMany(ctx, many)
	if err != nil || len(got) != len(many) {
		t.Fatalf("GetMany with corrupt values = %d entries, %v; want %d, nil", len(got), err, len(many))
	}
	if !same(got[0], v) {
		t.Errorf("GetMany entry 0 beside corrupt ones = %s, want %s", show(got[0]), show(v))
	}
	for i := 1; i < len(many); i++ {
		if got[i].Kind != driver.KindNone {
			t.Errorf("GetMany entry %d (corrupt or missing) = %s, want a miss", i, show(got[i]))
		}
	}
	// Deleted: an Acquire of the key now wins.
	for _, k := range append([]string{get}, many[1:4]...) {
		if _, won, err := st.Acquire(ctx, k, 2, r.now().Add(time.Minute)); err != nil || !won {
			t.Errorf("Acquire of %q after a read found it corrupt = won %v, %v; want true, nil (the value deleted)", k, won, err)
		}
	}
	r.s.Corrupt(t, acquire)
	cur, won, err := st.Acquire(ctx, acquire, 3, r.now().Add(time.Minute))
	switch {
	case err != nil:
		t.Fatalf("Acquire of a corrupt value: %v", err)
	case won:
		r.wantEntry(t, st, acquire, driver.Entry{Kind: driver.KindLease, Version: 3, ExpiresAt: r.mustGet(t, st, acquire).ExpiresAt})
	case cur.Kind != driver.KindNone:
		t.Errorf("Acquire of a corrupt value = %s, not won; want KindNone (try again) or won", show(cur))
	default:
		if _, won, err := st.Acquire(ctx, acquire, 4, r.now().Add(time.Minute)); err != nil || !won {
			t.Errorf("second Acquire of a corrupt value = won %v, %v; want true, nil", won, err)
		}
	}
}

func (r *remoteRun) codec(t *testing.T, st driver.Remote) {
	type payload struct {
		Name  string
		Count int
		Tags  []string
	}
	in := payload{"n", 3, []string{"a", "b"}}
	b, err := st.Marshal(in)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var out payload
	if err := st.Unmarshal(b, &out); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if out.Name != in.Name || out.Count != in.Count || strings.Join(out.Tags, ",") != "a,b" {
		t.Errorf("Unmarshal(Marshal(%+v)) = %+v", in, out)
	}
}

// wantUnstorable checks that err is marked driver.UnstorableError.
func wantUnstorable(t *testing.T, what string, err error) {
	t.Helper()
	var u driver.UnstorableError
	switch {
	case err == nil:
		t.Errorf("%s of an unstorable payload = nil, want an error", what)
	case !errors.As(err, &u) || !u.Unstorable():
		t.Errorf("%s of an unstorable payload = %v, want an error marked driver.UnstorableError", what, err)
	}
}

func (r *remoteRun) unstorable(t *testing.T, st driver.Remote) {
	if r.s.Unstorable == nil {
		t.Skip("RemoteSuite.Unstorable is nil")
	}
	ctx := ctxOf(t)
	big := r.value("", 2)
	big.Payload = r.s.Unstorable
	key := r.key(t, "k")
	old := r.value("old", 1)
	r.mustSet(t, st, key, old)
	wantUnstorable(t, "Set", st.Set(ctx, key, big))
	r.wantEntry(t, st, key, old)
	lease := r.key(t, "lease")
	exp := r.now().Add(time.Minute)
	if _, won, err := st.Acquire(ctx, lease, 3, exp); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	_, err := st.CompareAndSwap(ctx, lease, 3, big)
	wantUnstorable(t, "CompareAndSwap", err)
	r.wantEntry(t, st, lease, driver.Entry{Kind: driver.KindLease, Version: 3, ExpiresAt: exp})
}

func (r *remoteRun) setMany(t *testing.T, st driver.Remote) {
	bw, ok := st.(driver.BatchWriter)
	if !ok {
		t.Skipf("%T does not implement driver.BatchWriter", st)
	}
	ctx := ctxOf(t)
	keys := r.keys(t, 30)
	if _, won, err := st.Acquire(ctx, keys[0], 9, r.now().Add(time.Minute)); err != nil || !won {
		t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
	}
	r.mustSet(t, st, keys[1], r.value("old", 1))
	entries := make([]driver.Entry, len(keys))
	for i := range entries {
		entries[i] = r.value(fmt.Sprint("v", i), uint64(i+10))
	}
	entries[2] = driver.Entry{Kind: driver.KindNotFound, ExpiresAt: r.now().Add(time.Hour), Version: 5}
	entries[3].Deadline = r.now().Add(time.Minute)
	errs := bw.SetMany(ctx, keys, entries)
	if len(errs) != len(keys) {
		t.Fatalf("SetMany of %d keys returned %d errors, want one per key", len(keys), len(errs))
	}
	for i, k := range keys {
		if errs[i] != nil {
			t.Errorf("SetMany: key %d: %v", i, errs[i])
		}
		r.wantEntry(t, st, k, entries[i])
	}
	if errs := bw.SetMany(ctx, nil, nil); len(errs) != 0 {
		t.Errorf("SetMany of no key = %v, want no error", errs)
	}
}

func (r *remoteRun) setManyFenced(t *testing.T, st driver.Remote) {
	bw, ok := st.(driver.BatchWriter)
	if !ok {
		t.Skipf("%T does not implement driver.BatchWriter", st)
	}
	keys := r.keys(t, 6)
	old := r.value("old", 1)
	r.mustSet(t, st, keys[2], old)
	entries := make([]driver.Entry, len(keys))
	for i := range entries {
		entries[i] = r.value(fmt.Sprint("v", i), uint64(i+10))
		entries[i].Deadline = r.now().Add(time.Minute)
	}
	entries[2].Deadline = r.now().Add(-time.Second)
	entries[4].Deadline = r.now().Add(-time.Second)
	errs := bw.SetMany(ctxOf(t), keys, entries)
	if len(errs) != len(keys) {
		t.Fatalf("SetMany of %d keys returned %d errors, want one per key", len(keys), len(errs))
	}
	for i, k := range keys {
		switch i {
		case 2, 4:
			if errs[i] == nil {
				t.Errorf("SetMany: key %d, past its deadline: no error", i)
			}
		default:
			if errs[i] != nil {
				t.Errorf("SetMany: key %d, before its deadline: %v", i, errs[i])
			}
			r.wantEntry(t, st, k, entries[i])
		}
	}
	r.wantEntry(t, st, keys[2], old)
	r.wantMiss(t, st, keys[4], "a SetMany past its deadline")
}

func (r *remoteRun) setManyUnstorable(t *testing.T, st driver.Remote) {
	bw, ok := st.(driver.BatchWriter)
	if !ok {
		t.Skipf("%T does not implement driver.BatchWriter", st)
	}
	if r.s.Unstorable == nil {
		t.Skip("RemoteSuite.Unstorable is nil")
	}
	keys := r.keys(t, 3)
	entries := []driver.Entry{r.value("a", 1), r.value("", 2), r.value("c", 3)}
	entries[1].Payload = r.s.Unstorable
	errs := bw.SetMany(ctxOf(t), keys, entries)
	if len(errs) != len(keys) {
		t.Fatalf("SetMany of %d keys returned %d errors, want one per key", len(keys), len(errs))
	}
	wantUnstorable(t, "SetMany", errs[1])
	r.wantMiss(t, st, keys[1], "a SetMany of an unstorable payload")
	for _, i := range []int{0, 2} {
		if errs[i] != nil {
			t.Errorf("SetMany: key %d beside an unstorable one: %v", i, errs[i])
		}
		r.wantEntry(t, st, keys[i], entries[i])
	}
}

func (r *remoteRun) acquireMany(t *testing.T, st driver.Remote) {
	lb, ok := st.(driver.LeaseBatcher)
	if !ok {
		t.Skipf("%T does not implement driver.LeaseBatcher", st)
	}
	ctx := ctxOf(t)
	keys := r.keys(t, 30)
	held := make([]driver.Entry, len(keys)) // what each key holds before; KindNone: empty
	for i, k := range keys {
		switch i % 3 {
		case 1:
			held[i] = r.value(fmt.Sprint("v", i), uint64(i+1))
			r.mustSet(t, st, k, held[i])
		case 2:
			held[i] = driver.Entry{Kind: driver.KindLease, Version: uint64(1000 + i), ExpiresAt: r.now().Add(time.Minute)}
			if _, won, err := st.Acquire(ctx, k, held[i].Version, held[i].ExpiresAt); err != nil || !won {
				t.Fatalf("Acquire of an empty key = won %v, %v; want true, nil", won, err)
			}
		}
	}
	tokens := make([]uint64, len(keys))
	for i := range tokens {
		tokens[i] = uint64(500 + i)
	}
	exp := r.now().Add(time.Minute)
	cur, won, errs := lb.AcquireMany(ctx, keys, tokens, exp)
	if errs != nil {
		t.Fatalf("AcquireMany with every key succeeding: errs = %v, want nil", errs)
	}
	if len(cur) != len(keys) || len(won) != len(keys) {
		t.Fatalf("AcquireMany of %d keys returned %d entries and %d won", len(keys), len(cur), len(won))
	}
	for i, k := range keys {
		if held[i].Kind == driver.KindNone {
			if !won[i] {
				t.Errorf("AcquireMany: empty key %d not won", i)
			}
			r.wantEntry(t, st, k, driver.Entry{Kind: driver.KindLease, Version: tokens[i], ExpiresAt: exp})
			continue
		}
		if won[i] || !same(cur[i], held[i]) {
			t.Errorf("AcquireMany: key %d holding %s = %s, won %v; want that entry, false", i, show(held[i]), show(cur[i]), won[i])
		}
		r.wantEntry(t, st, k, held[i])
	}
}

func (r *remoteRun) acquireManyExclusive(t *testing.T, st driver.Remote) {
	lb, ok := st.(driver.LeaseBatcher)
	if !ok {
		t.Skipf("%T does not implement driver.LeaseBatcher", st)
	}
	ctx := ctxOf(t)
	keys := r.keys(t, 20)
	const n = 8
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		won   [n][]bool
		errs  [n][]error
	)
	for g := range n {
		// Each caller asks for an overlapping window of the keys.
		ks := keys[g : g+len(keys)-n+1]
		tokens := make([]uint64, len(ks))
		for i := range tokens {
			tokens[i] = uint64(g + 1)
		}
		wg.Go(func() {
			<-start
			_, won[g], errs[g] = lb.AcquireMany(ctx, ks, tokens, r.now().Add(time.Minute))
		})
	}
	close(start)
	wg.Wait()
	winners := make(map[int]int) // key index → caller
	for g := range n {
		if errs[g] != nil {
			t.Fatalf("AcquireMany %d: %v", g, errs[g])
		}
		for i, w := range won[g] {
			if !w {
				continue
			}
			if prev, ok := winners[g+i]; ok {
				t.Fatalf("key %d won by callers %d and %d", g+i, prev, g)
			}
			winners[g+i] = g
		}
	}
	for i, k := range keys {
		g, ok := winners[i]
		if !ok {
			t.Errorf("key %d, asked for by some caller, won by none", i)
			continue
		}
		if e := r.mustGet(t, st, k); e.Kind != driver.KindLease || e.Version != uint64(g+1) {
			t.Errorf("key %d = %s, want the lease of its winner %d", i, show(e), g)
		}
	}
}

func (r *remoteRun) casMany(t *testing.T, st driver.Remote) {
	lb, ok := st.(driver.LeaseBatcher)
	if !ok {
		t.Skipf("%T does not implement driver.LeaseBatcher", st)
	}
	ctx := ctxOf(t)
	keys := r.keys(t, 12)
	versions := make([]uint64, len(keys))
	entries := make([]driver.Entry, len(keys))
	before := make([]driver.Entry, len(keys))
	for i, k := range keys {
		entries[i] = r.value(fmt.Sprint("new", i), uint64(200+i))
		switch i % 3 {
		case 0: // a lease, its token given: swapped
			before[i] = driver.Entry{Kind: driver.KindLease, Version: uint64(100 + i), ExpiresAt: r.now().Add(time.Minute)}
			versions[i] = before[i].Version
		case 1: // a value, another version given: kept
			before[i] = r.value("kept", uint64(100+i))
			versions[i] = 1
		case 2: // empty, version 0 given: stays empty
		}
		if before[i].Kind != driver.KindNone {
			r.mustSet(t, st, k, before[i])
		}
	}
	swapped, errs := lb.CompareAndSwapMany(ctx, keys, versions, entries)
	if errs != nil {
		t.Fatalf("CompareAndSwapMany with every key succeeding: errs = %v, want nil", errs)
	}
	if len(swapped) != len(keys) {
		t.Fatalf("CompareAndSwapMany of %d keys returned %d results", len(keys), len(swapped))
	}
	for i, k := range keys {
		want := i%3 == 0
		if swapped[i] != want {
			t.Errorf("CompareAndSwapMany: key %d swapped = %v, want %v", i, swapped[i], want)
		}
		switch {
		case want:
			r.wantEntry(t, st, k, entries[i])
		case before[i].Kind != driver.KindNone:
			r.wantEntry(t, st, k, before[i])
		default:
			r.wantMiss(t, st, k, "a CompareAndSwapMany of an empty key")
		}
	}
}

func tagStore(t *testing.T, st driver.Remote) driver.TagStore {
	t.Helper()
	ts, ok := st.(driver.TagStore)
	if !ok {
		t.Skipf("%T does not implement driver.TagStore", st)
	}
	return ts
}

func (r *remoteRun) gensMissing(t *testing.T, st driver.Remote) {
	ts := tagStore(t, st)
	gens, err := ts.Generations(ctxOf(t), r.keys(t, 5))
	if err != nil || len(gens) != 5 {
		t.Fatalf("Generations of 5 keys = %v, %v; want 5 zeros", gens, err)
	}
	for i, g := range gens {
		if g != 0 {
			t.Errorf("generation %d of a key never written = %d, want 0", i, g)
		}
	}
	if gens, err := ts.Generations(ctxOf(t), nil); err != nil || len(gens) != 0 {
		t.Errorf("Generations of no key = %v, %v; want none", gens, err)
	}
}

func (r *remoteRun) gensEnsure(t *testing.T, st driver.Remote) {
	ts := tagStore(t, st)
	ctx := ctxOf(t)
	keys := r.keys(t, 10)
	first, err := ts.EnsureGenerations(ctx, keys, time.Hour)
	if err != nil || len(first) != len(keys) {
		t.Fatalf("EnsureGenerations = %v, %v; want %d generations", first, err, len(keys))
	}
	distinct := make(map[uint64]bool)
	for i, g := range first {
		if g == 0 {
			t.Errorf("EnsureGenerations created generation 0 for key %d", i)
		}
		distinct[g] = true
	}
	if len(distinct) < len(keys)/2 {
		t.Errorf("EnsureGenerations created only %d distinct generations for %d keys: they must be random", len(distinct), len(keys))
	}
	again, err := ts.EnsureGenerations(ctx, keys, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	read, err := ts.Generations(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		if again[i] != first[i] || read[i] != first[i] {
			t.Errorf("key %d: EnsureGenerations gave %d, then %d, Generations %d; want the same", i, first[i], again[i], read[i])
		}
	}
}

func (r *remoteRun) gensGetOrCreate(t *testing.T, st driver.Remote) {
	ts := tagStore(t, st)
	ctx := ctxOf(t)
	key := r.key(t, "k")
	g, err := ts.GetOrCreateGeneration(ctx, key, time.Hour)
	if err != nil || g == 0 {
		t.Fatalf("GetOrCreateGeneration of a missing key = %d, %v; want a new non-zero generation", g, err)
	}
	again, err := ts.GetOrCreateGeneration(ctx, key, time.Hour)
	if err != nil || again != g {
		t.Errorf("GetOrCreateGeneration again = %d, %v; want %d", again, err, g)
	}
	ensured, err := ts.EnsureGenerations(ctx, []string{key}, time.Hour)
	if err != nil || ensured[0] != g {
		t.Errorf("EnsureGenerations of the key = %v, %v; want [%d]", ensured, err, g)
	}
	other := r.key(t, "ensured")
	e, err := ts.EnsureGenerations(ctx, []string{other}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ts.GetOrCreateGeneration(ctx, other, time.Hour); err != nil || got != e[0] {
		t.Errorf("GetOrCreateGeneration of a key EnsureGenerations created = %d, %v; want %d", got, err, e[0])
	}
}

func (r *remoteRun) gensConcurrent(t *testing.T, st driver.Remote) {
	ts := tagStore(t, st)
	ctx := ctxOf(t)
	const n = 12
	for round := range 5 {
		key := r.key(t, fmt.Sprint(round))
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			gens  [n]uint64
			errs  [n]error
		)
		for i := range n {
			wg.Go(func() {
				<-start
				if i%2 == 0 {
					gens[i], errs[i] = ts.GetOrCreateGeneration(ctx, key, time.Hour)
					return
				}
				var g []uint64
				g, errs[i] = ts.EnsureGenerations(ctx, []string{key}, time.Hour)
				if errs[i] == nil {
					gens[i] = g[0]
				}
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("creator %d: %v", i, errs[i])
			}
			if gens[i] == 0 || gens[i] != gens[0] {
				t.Fatalf("round %d: concurrent creators of one generation got %v; want one non-zero generation", round, gens)
			}
		}
	}
}

func (r *remoteRun) gensBump(t *testing.T, st driver.Remote) {
	ts := tagStore(t, st)
	ctx := ctxOf(t)
	keys := r.keys(t, 4)
	old, err := ts.EnsureGenerations(ctx, keys[:3], time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.BumpGenerations(ctx, keys, time.Hour); err != nil {
		t.Fatalf("BumpGenerations: %v", err)
	}
	now, err := ts.Generations(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range now {
		if g == 0 {
			t.Errorf("key %d has no generation after BumpGenerations", i)
		}
		if i < 3 && g == old[i] {
			t.Errorf("key %d kept generation %d through BumpGenerations", i, g)
		}
	}
	if got, err := ts.EnsureGenerations(ctx, keys, time.Hour); err != nil || fmt.Sprint(got) != fmt.Sprint(now) {
		t.Errorf("EnsureGenerations after BumpGenerations = %v, %v; want the bumped %v", got, err, now)
	}
}

func (r *remoteRun) gensThen(t *testing.T, st driver.Remote) {
	ts := tagStore(t, st)
	ctx := ctxOf(t)
	keys := r.keys(t, 3)
	other := r.key(t, "other")
	pre, err := ts.EnsureGenerations(ctx, []string{other}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// then names a key of keys: it must be read after keys were created.
	then := []string{keys[1], other, r.key(t, "missing")}
	gens, thenGens, err := ts.EnsureGenerationsThen(ctx, keys, time.Hour, then)
	if err != nil {
		t.Fatalf("EnsureGenerationsThen: %v", err)
	}
	if len(gens) != len(keys) || len(thenGens) != len(then) {
		t.Fatalf("EnsureGenerationsThen returned %d and %d generations, want %d and %d", len(gens), len(thenGens), len(keys), len(then))
	}
	for i, g := range gens {
		if g == 0 {
			t.Errorf("EnsureGenerationsThen created generation 0 for key %d", i)
		}
	}
	if want := []uint64{gens[1], pre[0], 0}; fmt.Sprint(thenGens) != fmt.Sprint(want) {
		t.Errorf("generations of then = %v, want %v (then[0] is keys[1], read after it was created)", thenGens, want)
	}
	if got, err := ts.Generations(ctx, keys); err != nil || fmt.Sprint(got) != fmt.Sprint(gens) {
		t.Errorf("Generations after EnsureGenerationsThen = %v, %v; want %v", got, err, gens)
	}
	g2, t2, err := ts.EnsureGenerationsThen(ctx, keys, time.Hour, nil)
	if err != nil || fmt.Sprint(g2) != fmt.Sprint(gens) || len(t2) != 0 {
		t.Errorf("EnsureGenerationsThen with no then = %v, %v, %v; want %v, none, nil", g2, t2, err, gens)
	}
}

func (r *remoteRun) gensTTL(t *testing.T, st driver.Remote) {
	ts := tagStore(t, st)
	ctx := ctxOf(t)
	short, extended, created, bumped := r.key(t, "short"), r.key(t, "extended"), r.key(t, "created"), r.key(t, "bumped")
	const life = 300 * time.Millisecond
	exp := r.now().Add(life)
	if _, err := ts.EnsureGenerations(ctx, []string{short, extended, bumped}, life); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.GetOrCreateGeneration(ctx, created, life); err != nil {
		t.Fatal(err)
	}
	// EnsureGenerations makes an existing generation live at least its
	// ttl; BumpGenerations gives the new one at least its ttl.
	if _, err := ts.EnsureGenerations(ctx, []string{extended}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := ts.BumpGenerations(ctx, []string{bumped}, time.Hour); err != nil {
		t.Fatal(err)
	}
	gens := func(k string) uint64 {
		g, err := ts.Generations(ctx, []string{k})
		if err != nil {
			t.Fatal(err)
		}
		return g[0]
	}
	r.pass(t, exp, func() bool { return gens(short) == 0 && gens(created) == 0 })
	for _, k := range []string{short, created} {
		if g := gens(k); g != 0 {
			t.Errorf("generation %q = %d after its TTL, want 0 (gone)", k, g)
		}
	}
	for _, k := range []string{extended, bumped} {
		if g := gens(k); g == 0 {
			t.Errorf("generation %q is gone after the first TTL although renewed for an hour", k)
		}
	}
}

func (r *remoteRun) shard(t *testing.T, st driver.Remote) {
	sh, ok := st.(driver.Sharder)
	if !ok {
		t.Skipf("%T does not implement driver.Sharder", st)
	}
	for _, k := range r.keys(t, 20) {
		if a, b := sh.Shard(k), sh.Shard(k); a != b {
			t.Errorf("Shard(%q) = %q, then %q; want the same shard", k, a, b)
		}
	}
}

func carrier(t *testing.T, st driver.Remote) driver.PublishCarrier {
	t.Helper()
	pc, ok := st.(driver.PublishCarrier)
	if !ok {
		t.Skipf("%T does not implement driver.PublishCarrier", st)
	}
	return pc
}

func (r *remoteRun) carrier(t *testing.T, st driver.Remote) {
	pc := carrier(t, st)
	if pc.Carrier() != pc.Carrier() {
		t.Error("Carrier() differs between two calls on one store")
	}
	if pc.Carrier() == (driver.Carrier{}) {
		t.Error("Carrier() is the zero Carrier, which names no pool")
	}
}

func (r *remoteRun) setAndPublish(t *testing.T, st driver.Remote) {
	pc := carrier(t, st)
	ctx := ctxOf(t)
	channel := r.key(t, "channel")
	alone, with, late := r.key(t, "alone"), r.key(t, "with"), r.key(t, "late")
	e := r.value("v", 1)
	if setErr, pubErr := pc.SetAndPublish(ctx, alone, e, "PUBLISH", channel, nil); setErr != nil || pubErr != nil {
		t.Errorf("SetAndPublish with a nil payload = %v, %v; want nil, nil", setErr, pubErr)
	}
	r.wantEntry(t, st, alone, e)
	if setErr, pubErr := pc.SetAndPublish(ctx, with, e, "PUBLISH", channel, []byte("message")); setErr != nil || pubErr != nil {
		t.Errorf("SetAndPublish = %v, %v; want nil, nil", setErr, pubErr)
	}
	r.wantEntry(t, st, with, e)
	tooLate := r.value("late", 2)
	tooLate.Deadline = r.now().Add(-time.Second)
	if setErr, _ := pc.SetAndPublish(ctx, late, tooLate, "PUBLISH", channel, []byte("message")); setErr == nil {
		t.Error("SetAndPublish past its deadline: setErr = nil, want an error")
	}
	r.wantMiss(t, st, late, "a SetAndPublish past its deadline")
}

func (r *remoteRun) deleteAndPublish(t *testing.T, st driver.Remote) {
	pc := carrier(t, st)
	ctx := ctxOf(t)
	channel := r.key(t, "channel")
	for _, payload := range [][]byte{nil, []byte("message")} {
		key := r.key(t, fmt.Sprint(payload != nil))
		r.mustSet(t, st, key, r.value("v", 1))
		if delErr, pubErr := pc.DeleteAndPublish(ctx, key, "PUBLISH", channel, payload); delErr != nil || pubErr != nil {
			t.Errorf("DeleteAndPublish(payload %q) = %v, %v; want nil, nil", payload, delErr, pubErr)
		}
		r.wantMiss(t, st, key, "DeleteAndPublish")
	}
}
