package clock

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// world is a clock plus a way to let time pass on it, so that one scenario
// runs on the real clock and on a Fake and must give the same answers.
type world struct {
	name    string
	clk     Clock
	advance func(d time.Duration)
	unit    time.Duration
}

func worlds() []world {
	fake := NewFake(time.Time{})
	return []world{
		{name: "fake", clk: fake, advance: fake.Advance, unit: time.Second},
		// The real clock needs slack: a timer of 1 unit is checked after 3.
		{name: "real", clk: Real(), advance: time.Sleep, unit: 20 * time.Millisecond},
	}
}

func received(c <-chan time.Time) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func TestTimerSemantics(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, w world)
	}{
		{"fires after its duration, not before", func(t *testing.T, w world) {
			tm := w.clk.NewTimer(w.unit)
			if received(tm.C()) {
				t.Fatal("timer fired at once")
			}
			w.advance(3 * w.unit)
			if !received(tm.C()) {
				t.Fatal("timer did not fire")
			}
			if tm.Stop() {
				t.Error("Stop after the value was received = true, want false")
			}
		}},
		{"stop before firing", func(t *testing.T, w world) {
			tm := w.clk.NewTimer(w.unit)
			if !tm.Stop() {
				t.Error("Stop of an armed timer = false, want true")
			}
			w.advance(3 * w.unit)
			if received(tm.C()) {
				t.Error("stopped timer fired")
			}
			if tm.Stop() {
				t.Error("second Stop = true, want false")
			}
		}},
		{"stop after firing discards the unread value", func(t *testing.T, w world) {
			tm := w.clk.NewTimer(w.unit)
			w.advance(3 * w.unit)
			if !tm.Stop() {
				t.Error("Stop with an unread value = false, want true")
			}
			if received(tm.C()) {
				t.Error("stale value received after Stop")
			}
		}},
		{"reset re-arms and discards the unread value", func(t *testing.T, w world) {
			tm := w.clk.NewTimer(w.unit)
			w.advance(3 * w.unit)
			tm.Reset(10 * w.unit)
			if received(tm.C()) {
				t.Error("stale value received after Reset")
			}
			w.advance(3 * w.unit)
			if received(tm.C()) {
				t.Error("reset timer fired early")
			}
			if !tm.Stop() {
				t.Error("Stop of a reset timer = false, want true")
			}
		}},
		{"non-positive duration fires at once", func(t *testing.T, w world) {
			tm := w.clk.NewTimer(0)
			w.advance(w.unit)
			if !received(tm.C()) {
				t.Error("zero timer did not fire")
			}
		}},
		{"ticker drops missed ticks", func(t *testing.T, w world) {
			tk := w.clk.NewTicker(w.unit)
			defer tk.Stop()
			w.advance(w.unit*3 + w.unit/2)
			if !received(tk.C()) {
				t.Fatal("no tick")
			}
			if received(tk.C()) {
				t.Error("more than one tick buffered")
			}
		}},
		{"ticker stop", func(t *testing.T, w world) {
			tk := w.clk.NewTicker(w.unit)
			tk.Stop()
			w.advance(3 * w.unit)
			if received(tk.C()) {
				t.Error("stopped ticker ticked")
			}
		}},
		{"after func runs once, in its own goroutine", func(t *testing.T, w world) {
			done := make(chan struct{})
			var calls atomic.Int32
			w.clk.AfterFunc(w.unit, func() {
				calls.Add(1)
				close(done)
			})
			w.advance(3 * w.unit)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("AfterFunc did not run")
			}
			w.advance(3 * w.unit)
			if n := calls.Load(); n != 1 {
				t.Errorf("AfterFunc ran %d times, want 1", n)
			}
		}},
		{"after func stop", func(t *testing.T, w world) {
			var calls atomic.Int32
			tm := w.clk.AfterFunc(w.unit, func() { calls.Add(1) })
			if tm.C() != nil {
				t.Error("AfterFunc timer has a channel")
			}
			if !tm.Stop() {
				t.Error("Stop = false, want true")
			}
			w.advance(3 * w.unit)
			if n := calls.Load(); n != 0 {
				t.Errorf("stopped AfterFunc ran %d times", n)
			}
		}},
	}
	for _, w := range worlds() {
		t.Run(w.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, w) })
			}
		})
	}
}

func TestFakeAdvanceOrderAndTimes(t *testing.T) {
	f := NewFake(time.Time{})
	start := f.Now()
	if !start.Equal(FakeEpoch) {
		t.Fatalf("Now = %v, want %v", start, FakeEpoch)
	}
	a := f.NewTimer(3 * time.Second)
	b := f.NewTimer(1 * time.Second)
	tk := f.NewTicker(2 * time.Second)
	defer tk.Stop()
	if n := f.Waiters(); n != 3 {
		t.Fatalf("Waiters = %d, want 3", n)
	}
	f.Advance(5 * time.Second)
	if got := f.Since(start); got != 5*time.Second {
		t.Errorf("Since = %v, want 5s", got)
	}
	for _, c := range []struct {
		name string
		c    <-chan time.Time
		want time.Duration
	}{
		{"a", a.C(), 3 * time.Second},
		{"b", b.C(), time.Second},
		{"ticker's first tick", tk.C(), 2 * time.Second},
	} {
		select {
		case at := <-c.c:
			if got := at.Sub(start); got != c.want {
				t.Errorf("%s fired at +%v, want +%v", c.name, got, c.want)
			}
		default:
			t.Errorf("%s did not fire", c.name)
		}
	}
	// The ticker's next deadline is +6s: the tick at +4s was dropped.
	f.Advance(time.Second)
	select {
	case at := <-tk.C():
		if got := at.Sub(start); got != 6*time.Second {
			t.Errorf("next tick at +%v, want +6s", got)
		}
	default:
		t.Error("no tick at +6s")
	}
	if n := f.Waiters(); n != 1 {
		t.Errorf("Waiters = %d, want 1 (the ticker)", n)
	}
}

func TestFakeBlockUntilWaiters(t *testing.T) {
	f := NewFake(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fired := make(chan struct{})
	go func() {
		<-f.After(time.Second)
		close(fired)
	}()
	if err := f.BlockUntilWaiters(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Second)
	<-fired

	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelShort()
	if err := f.BlockUntilWaiters(short, 1); err == nil {
		t.Error("BlockUntilWaiters with no waiter returned nil, want the context's error")
	}
}

func TestFakePanics(t *testing.T) {
	f := NewFake(time.Time{})
	tests := []struct {
		name string
		fn   func()
	}{
		{"ticker of zero", func() { f.NewTicker(0) }},
		{"ticker reset to zero", func() { f.NewTicker(time.Second).Reset(0) }},
		{"negative advance", func() { f.Advance(-time.Second) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.fn()
		})
	}
}
