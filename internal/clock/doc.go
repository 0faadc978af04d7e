// Package clock abstracts time so that code driven by timers (heartbeat
// deadlines, lease expiry, renewal loops) runs in virtual time under test.
//
// Production code takes a Clock and uses clock.Real(); tests pass a *Fake and
// move it with Advance:
//
//	clk := clock.NewFake(time.Time{})
//	t := clk.NewTimer(5 * time.Second)
//	clk.Advance(5 * time.Second) // t fires now, with no real waiting
//	<-t.C()
//
// A goroutine that waits on a Fake's timer can be synchronised with
// BlockUntilWaiters: it returns once the goroutine has armed its next timer.
//
// Real and Fake are safe for concurrent use, as are their timers and tickers.
package clock
