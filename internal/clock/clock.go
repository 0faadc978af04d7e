package clock

import "time"

// Clock tells the time and makes timers. Real is the system clock; Fake moves
// only when told to.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Since returns the time elapsed since t: Now().Sub(t).
	Since(t time.Time) time.Duration
	// NewTimer returns a timer that sends the time on its channel once, after
	// at least d. A d <= 0 fires at once.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that sends the time on its channel every d,
	// dropping ticks a slow receiver misses. It panics if d <= 0, as
	// time.NewTicker does.
	NewTicker(d time.Duration) Ticker
	// After is NewTimer(d).C().
	After(d time.Duration) <-chan time.Time
	// AfterFunc calls f in its own goroutine after at least d. The returned
	// timer's C is nil; Stop cancels the call if it has not started.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a single event, like *time.Timer. As with Go 1.23 timers, no
// stale value is received from C after Stop or Reset returns.
type Timer interface {
	// C returns the channel the time is sent on; nil for AfterFunc timers.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the call
	// stopped the timer, false if it had already fired or been stopped.
	Stop() bool
	// Reset changes the timer to fire after d. It reports whether the
	// timer had been active.
	Reset(d time.Duration) bool
}

// Ticker delivers ticks at intervals, like *time.Ticker.
type Ticker interface {
	// C returns the channel the ticks are sent on.
	C() <-chan time.Time
	// Stop turns the ticker off; no more ticks are sent.
	Stop()
	// Reset stops the ticker and restarts it with period d. It panics if
	// d <= 0.
	Reset(d time.Duration)
}

// Real returns the system clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) Since(t time.Time) time.Duration        { return time.Since(t) }
func (realClock) NewTimer(d time.Duration) Timer         { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{time.AfterFunc(d, f)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time   { return t.t.C }
func (t realTicker) Stop()                 { t.t.Stop() }
func (t realTicker) Reset(d time.Duration) { t.t.Reset(d) }
