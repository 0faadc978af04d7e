package clock

import (
	"context"
	"slices"
	"sync"
	"time"
)

// FakeEpoch is where a Fake made with a zero start time begins.
var FakeEpoch = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Fake is a Clock that stands still until Advance moves it. Its timers and
// tickers behave like the real ones: channels hold at most one pending
// value, tickers drop ticks a slow receiver misses, AfterFunc runs f in its
// own goroutine, and Stop and Reset discard a value not yet received.
//
// A Fake is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex // guards the fields below
	now     time.Time
	seq     uint64
	waiters []*fakeTimer  // armed timers, tickers and AfterFuncs
	changed chan struct{} // closed and replaced whenever waiters changes
}

var _ Clock = (*Fake)(nil)

// NewFake returns a Fake reading start; a zero start means FakeEpoch.
func NewFake(start time.Time) *Fake {
	if start.IsZero() {
		start = FakeEpoch
	}
	return &Fake{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Since returns f.Now().Sub(t).
func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// NewTimer returns a timer that fires when the fake time reaches Now()+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armLocked(t, d, 0)
	return t
}

// NewTicker returns a ticker with period d. It panics if d <= 0.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armLocked(t, d, d)
	return fakeTicker{t}
}

// After is NewTimer(d).C().
func (f *Fake) After(d time.Duration) <-chan time.Time { return f.NewTimer(d).C() }

// AfterFunc calls fn in its own goroutine when the fake time reaches
// Now()+d.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	t := &fakeTimer{f: f, fn: fn}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armLocked(t, d, 0)
	return t
}

// Advance moves the fake time forward by d, firing in deadline order every
// timer and ticker that falls due; each fires with its own deadline as the
// time sent. It panics if d < 0: time does not go back.
func (f *Fake) Advance(d time.Duration) {
	if d < 0 {
		panic("clock: Advance with a negative duration")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	end := f.now.Add(d)
	for {
		t := f.nextDueLocked(end)
		if t == nil {
			break
		}
		if t.when.After(f.now) {
			f.now = t.when
		}
		f.fireLocked(t)
	}
	f.now = end
}

// Waiters returns the number of armed timers, tickers and AfterFuncs.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// BlockUntilWaiters blocks until at least n timers, tickers and AfterFuncs
// are armed, or ctx ends. Tests use it to know that a goroutine has reached
// its next wait before they Advance.
func (f *Fake) BlockUntilWaiters(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		have, changed := len(f.waiters), f.changed
		f.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// armLocked schedules t to fire after d (at once if d <= 0), repeating
// every period when period > 0.
func (f *Fake) armLocked(t *fakeTimer, d, period time.Duration) {
	f.seq++
	t.seq = f.seq
	t.when = f.now.Add(d)
	t.period = period
	if d <= 0 && period == 0 {
		f.fireLocked(t)
		return
	}
	t.armed = true
	f.waiters = append(f.waiters, t)
	f.notifyLocked()
}

// disarmLocked removes t from the waiters and reports whether it was armed.
func (f *Fake) disarmLocked(t *fakeTimer) bool {
	if !t.armed {
		return false
	}
	t.armed = false
	if i := slices.Index(f.waiters, t); i >= 0 {
		f.waiters = slices.Delete(f.waiters, i, i+1)
	}
	f.notifyLocked()
	return true
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// nextDueLocked returns the armed waiter with the earliest deadline at or
// before end (ties in arming order), or nil.
func (f *Fake) nextDueLocked(end time.Time) *fakeTimer {
	var best *fakeTimer
	for _, t := range f.waiters {
		if t.when.After(end) {
			continue
		}
		if best == nil || t.when.Before(best.when) || (t.when.Equal(best.when) && t.seq < best.seq) {
			best = t
		}
	}
	return best
}

// fireLocked delivers t's event. A ticker stays armed with its next
// deadline; anything else is disarmed.
func (f *Fake) fireLocked(t *fakeTimer) {
	at := t.when
	if t.period > 0 {
		t.when = t.when.Add(t.period)
		f.seq++
		t.seq = f.seq
	} else {
		f.disarmLocked(t)
	}
	if t.fn != nil {
		go t.fn()
		return
	}
	select {
	case t.c <- at:
	default: // a value is pending: drop this one, as the runtime does
	}
}

// fakeTimer is a timer, ticker or AfterFunc of a Fake; its fields are
// guarded by f.mu.
type fakeTimer struct {
	f      *Fake
	c      chan time.Time // capacity 1, like the runtime's; nil for AfterFunc
	fn     func()
	when   time.Time
	period time.Duration // > 0 for a ticker
	seq    uint64        // arming order, for ties
	armed  bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

// stopLocked disarms t and discards a pending value; it reports whether the
// event had not been delivered yet.
func (t *fakeTimer) stopLocked() bool {
	pending := t.f.disarmLocked(t)
	if t.c != nil {
		select {
		case <-t.c:
			pending = true
		default:
		}
	}
	return pending
}

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.stopLocked()
}

// Reset re-arms a timer or AfterFunc to fire after d.
func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	pending := t.stopLocked()
	t.f.armLocked(t, d, 0)
	return pending
}

// fakeTicker is the Ticker view of a repeating fakeTimer.
type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.c }

func (k fakeTicker) Stop() {
	k.t.f.mu.Lock()
	defer k.t.f.mu.Unlock()
	k.t.stopLocked()
}

// Reset restarts the ticker with period d; it panics if d <= 0, as
// time.Ticker.Reset does.
func (k fakeTicker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clock: non-positive interval for Ticker.Reset")
	}
	k.t.f.mu.Lock()
	defer k.t.f.mu.Unlock()
	k.t.stopLocked()
	k.t.f.armLocked(k.t, d, d)
}
