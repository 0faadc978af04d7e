package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/wire"
	"github.com/xgpu/xgpu/peers"
	"github.com/xgpu/xgpu/runtime"
)

// Case groups, in the order Run measures them.
const (
	GroupSync      = "sync"      // synchronous call round trips
	GroupAsync     = "async"     // pipelined asynchronous call rate
	GroupH2D       = "h2d"       // host to device copies
	GroupD2H       = "d2h"       // device to host copies
	GroupPeer      = "peer"      // device to device copies between two servers
	GroupTransport = "transport" // the data-plane transport's bulk lanes against TCP
)

// Groups lists every case group in the order Run measures them.
var Groups = []string{GroupSync, GroupAsync, GroupH2D, GroupD2H, GroupPeer, GroupTransport}

// Defaults for the zero fields of Options.
const (
	DefaultRounds        = 5
	DefaultSyncCalls     = 500
	DefaultAsyncCalls    = 20000
	DefaultRoundBytes    = 32 << 20
	DefaultTransportSize = 64 << 20

	// MaxSize bounds a copy size.
	MaxSize = 4 << 30
)

// DefaultSizes are the copy sizes of a full run: 1 MiB to 1 GiB.
var DefaultSizes = []int64{1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30}

// QuickSizes are the copy sizes of a quick run: 1 MiB to 64 MiB.
var QuickSizes = []int64{1 << 20, 4 << 20, 16 << 20, 64 << 20}

// transportLanes are the lane counts the transport group measures, besides
// one raw stream.
var transportLanes = []int{1, 2, 4, peers.DefaultBulkLanes}

// Options select what Run measures. The zero value is a full run.
type Options struct {
	// Sizes are the copy sizes of the h2d, d2h and peer groups, in
	// bytes, each at most MaxSize. Zero: DefaultSizes.
	Sizes []int64 `json:"sizes"`
	// Groups are the case groups to run (see Groups). Zero: all.
	Groups []string `json:"groups"`
	// Rounds is how many times each case alternates with its baseline.
	// Zero: DefaultRounds.
	Rounds int `json:"rounds"`
	// SyncCalls is the number of calls each method makes per round in
	// the sync group. Zero: DefaultSyncCalls.
	SyncCalls int `json:"sync_calls"`
	// AsyncCalls is the number of calls each method makes per round in
	// the async group. Zero: DefaultAsyncCalls.
	AsyncCalls int `json:"async_calls"`
	// RoundBytes is the least each method moves per round of a copy
	// case: smaller copies repeat until they reach it, so that a round
	// is long enough to time. Zero: DefaultRoundBytes (32 MiB).
	RoundBytes int64 `json:"round_bytes"`
	// TransportSize is the transfer size of the transport group. Zero:
	// DefaultTransportSize (64 MiB).
	TransportSize int64 `json:"transport_size"`
	// Progress receives one line per case as it completes. Zero:
	// nothing is printed.
	Progress io.Writer `json:"-"`
}

// QuickOptions are the options of a quick run (xgpu bench --quick): copies
// up to 64 MiB, three rounds.
func QuickOptions() Options {
	return Options{Sizes: slices.Clone(QuickSizes), Rounds: 3, SyncCalls: 300, AsyncCalls: 10000, RoundBytes: 8 << 20}
}

// withDefaults returns o with every zero field set.
func (o Options) withDefaults() Options {
	if len(o.Sizes) == 0 {
		o.Sizes = slices.Clone(DefaultSizes)
	}
	if len(o.Groups) == 0 {
		o.Groups = slices.Clone(Groups)
	}
	if o.Rounds == 0 {
		o.Rounds = DefaultRounds
	}
	if o.SyncCalls == 0 {
		o.SyncCalls = DefaultSyncCalls
	}
	if o.AsyncCalls == 0 {
		o.AsyncCalls = DefaultAsyncCalls
	}
	if o.RoundBytes == 0 {
		o.RoundBytes = DefaultRoundBytes
	}
	if o.TransportSize == 0 {
		o.TransportSize = DefaultTransportSize
	}
	return o
}

// Validate reports every problem of o, joined, or nil.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("bench: options: "+format, args...))
	}
	for _, n := range o.Sizes {
		if n <= 0 || n > MaxSize {
			bad("size %d outside 1..%d", n, int64(MaxSize))
		}
	}
	for _, g := range o.Groups {
		if !slices.Contains(Groups, g) {
			bad("unknown case group %q (want one of %s)", g, strings.Join(Groups, ", "))
		}
	}
	if o.Rounds < 0 || o.SyncCalls < 0 || o.AsyncCalls < 0 || o.RoundBytes < 0 {
		bad("Rounds, SyncCalls, AsyncCalls and RoundBytes must not be negative")
	}
	if o.TransportSize < 0 || o.TransportSize > MaxSize {
		bad("transport size %d outside 0..%d", o.TransportSize, int64(MaxSize))
	}
	return errors.Join(errs...)
}

// Env is what Run measures: an open xgpu client with a device on each of
// two servers, and two baseline peers (ServePeer), each in a process of
// its own.
type Env struct {
	// Client is the xgpu client under test. Required.
	Client *runtime.Client
	// DevA and DevB are logical devices of Client on two different
	// servers. DevA takes the host copies and is the source of peer
	// copies; DevB is their destination.
	DevA, DevB int
	// PeerA is the baseline of every case; PeerB receives the bulk data
	// PeerA pushes in the peer group's baseline. Required: PeerA, and
	// PeerB when the peer group runs.
	PeerA, PeerB PeerInfo
	// Backend names the servers' device backend in the report. Zero:
	// not reported.
	Backend string
	// Setup describes the processes in the report. Zero: not reported.
	Setup string
}

// Run measures every selected case against its baseline, interleaved
// round by round in this one run, and returns the report. ctx stops it
// between operations. Run allocates on the two devices and frees what
// it allocated before it returns.
func Run(ctx context.Context, env Env, opt Options) (*Report, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	switch {
	case env.Client == nil:
		return nil, errors.New("bench: Env.Client is nil")
	case env.PeerA.QUIC == "" || env.PeerA.TCP == "":
		return nil, errors.New("bench: Env.PeerA has no address")
	case slices.Contains(opt.Groups, GroupPeer) && env.PeerB.QUIC == "":
		return nil, errors.New("bench: the peer group needs Env.PeerB")
	case slices.Contains(opt.Groups, GroupPeer) && env.DevA == env.DevB:
		return nil, errors.New("bench: the peer group needs two devices (Env.DevA, Env.DevB)")
	}
	start := time.Now()
	rep := &Report{
		Version: ReportVersion, Machine: DescribeMachine(), Date: start.UTC().Format(time.RFC3339),
		Backend: env.Backend, Setup: env.Setup, Settings: opt, Cases: []Result{},
	}
	r := &runner{ctx: ctx, env: env, c: env.Client, opt: opt, rep: rep}
	defer r.close()
	if err := r.setup(); err != nil {
		return nil, err
	}
	for _, g := range Groups {
		if !slices.Contains(opt.Groups, g) {
			continue
		}
		var err error
		switch g {
		case GroupSync:
			err = r.syncGroup()
		case GroupAsync:
			err = r.asyncGroup()
		case GroupH2D, GroupD2H, GroupPeer:
			err = r.copyGroup(g)
		case GroupTransport:
			err = r.transportGroup()
		}
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", g, err)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// runner holds what one Run uses.
type runner struct {
	ctx context.Context
	env Env
	c   *runtime.Client
	opt Options
	rep *Report

	pc    *peerClient // default transport to PeerA
	tcp   *tcpClient  // one TCP connection to PeerA
	lanes map[int]*peerClient

	small  uint64 // 4 KiB on DevA
	bufA   uint64 // maxSize on DevA (0: none)
	bufB   uint64 // maxSize on DevB (0: none)
	stream runtime.Stream
	src    []byte // host source, filled
	dst    []byte // host destination
}

func (r *runner) has(g string) bool { return slices.Contains(r.opt.Groups, g) }

func (r *runner) setup() error {
	var err error
	if r.pc, err = dialPeerQUIC(r.ctx, r.env.PeerA, nil); err != nil {
		return err
	}
	if r.tcp, err = dialTCP(r.ctx, r.env.PeerA.TCP); err != nil {
		return err
	}
	if r.small, err = r.c.Malloc(r.env.DevA, 4<<10); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if r.stream, err = r.c.StreamCreate(r.env.DevA, runtime.StreamNonBlocking, 0); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	var maxSize, hostSize int64
	if r.has(GroupH2D) || r.has(GroupD2H) || r.has(GroupPeer) {
		maxSize = slices.Max(r.opt.Sizes)
	}
	hostSize = maxSize
	if r.has(GroupTransport) {
		hostSize = max(hostSize, r.opt.TransportSize)
	}
	if hostSize > 0 {
		r.src = make([]byte, hostSize)
		fill(r.src)
		if r.has(GroupD2H) {
			r.dst = make([]byte, hostSize)
		}
	}
	if maxSize > 0 {
		if r.bufA, err = r.c.Malloc(r.env.DevA, uint64(maxSize)); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if !r.has(GroupH2D) {
			// The h2d group's warm-up fills it otherwise: D2H and peer
			// copies must read real data, not untouched memory.
			if err := r.c.MemcpyHtoD(r.bufA, r.src[:maxSize]); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
		}
	}
	if maxSize > 0 && r.has(GroupPeer) {
		if r.bufB, err = r.c.Malloc(r.env.DevB, uint64(maxSize)); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

func (r *runner) close() {
	for _, p := range []uint64{r.small, r.bufA, r.bufB} {
		if p != 0 {
			_ = r.c.Free(p)
		}
	}
	if r.stream.Handle() != 0 {
		_ = r.c.StreamDestroy(r.stream)
	}
	if r.pc != nil {
		_ = r.pc.close()
	}
	if r.tcp != nil {
		_ = r.tcp.close()
	}
	for _, pc := range r.lanes {
		_ = pc.close()
	}
}

// fill writes a pseudo-random pattern, repeating every 64 KiB, over p:
// every page is then real memory with non-zero bytes.
func fill(p []byte) {
	const period = 64 << 10
	x := uint64(0x9E3779B97F4A7C15)
	for i := range p[:min(len(p), period)] {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x)
	}
	for n := period; n < len(p); n *= 2 {
		copy(p[n:], p[:n])
	}
}

// add records a case and prints its progress line.
func (r *runner) add(res Result) {
	res.Ratio = ratio(res.XGPU, res.Baseline)
	if res.ReferenceName != "" {
		res.ReferenceRatio = ratio(res.XGPU, res.Reference)
	}
	if res.Unit == UnitMicros {
		res.Better = "lower"
	} else {
		res.Better = "higher"
	}
	r.rep.Cases = append(r.rep.Cases, res)
	if w := r.opt.Progress; w != nil {
		unit := res.Unit
		if unit == UnitMicros {
			unit = "µs"
		}
		fmt.Fprintf(w, "%-34s xgpu %s, baseline %s %s, ratio %.2f\n", res.Name,
			fmtFigure(res.XGPU, res.XGPUP99, res.Unit), fmtFigure(res.Baseline, res.BaselineP99, res.Unit), unit, res.Ratio)
	}
}

// method is one way of doing a case's operation.
type method func() error

// rotated returns 0..n-1 rotated by k, so that no method always goes
// first in a round.
func rotated(n, k int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (i + k) % n
	}
	return out
}

// latencies runs every method opt.SyncCalls times per round, the
// methods taking turns round by round, and returns each method's call
// times in microseconds.
func (r *runner) latencies(ms ...method) ([][]float64, error) {
	for _, m := range ms { // warm-up
		for range min(50, r.opt.SyncCalls) {
			if err := m(); err != nil {
				return nil, err
			}
		}
	}
	out := make([][]float64, len(ms))
	for i := range out {
		out[i] = make([]float64, 0, r.opt.Rounds*r.opt.SyncCalls)
	}
	for round := range r.opt.Rounds {
		for _, k := range rotated(len(ms), round) {
			if err := r.ctx.Err(); err != nil {
				return nil, context.Cause(r.ctx)
			}
			for range r.opt.SyncCalls {
				t := time.Now()
				if err := ms[k](); err != nil {
					return nil, err
				}
				out[k] = append(out[k], float64(time.Since(t).Nanoseconds())/1e3)
			}
		}
	}
	return out, nil
}

// rates runs every method once per round, the methods taking turns round
// by round, and returns the median over rounds of units per second for
// each, where one run of a method does units units of work (calls or
// bytes), after one untimed warm-up run each.
func (r *runner) rates(units float64, ms ...method) ([]float64, error) {
	for _, m := range ms {
		if err := m(); err != nil {
			return nil, err
		}
	}
	return r.timedRates(units, ms...)
}

func (r *runner) timedRates(units float64, ms ...method) ([]float64, error) {
	per := make([][]float64, len(ms))
	for round := range r.opt.Rounds {
		for _, k := range rotated(len(ms), round) {
			if err := r.ctx.Err(); err != nil {
				return nil, context.Cause(r.ctx)
			}
			t := time.Now()
			if err := ms[k](); err != nil {
				return nil, err
			}
			per[k] = append(per[k], units/time.Since(t).Seconds())
		}
	}
	out := make([]float64, len(ms))
	for k := range per {
		out[k] = quantile(per[k], 0.5)
	}
	return out, nil
}

// callBody encodes c for op, as the runtime sends it, so that a baseline
// frame has the size of the xgpu call it stands for.
func callBody(op wire.Op, c *calls.Call) []byte {
	var e wire.Enc
	if err := c.Encode(op, &e); err != nil {
		panic(err) // the ops and fields here are fixed and valid
	}
	return e.B
}

func (r *runner) syncGroup() error {
	out := make([]byte, 4)
	dev := uint32(r.env.DevA)
	cases := []struct {
		name string
		xgpu method
		body []byte
	}{
		{"sync/d2h-4B", func() error { return r.c.MemcpyDtoH(out, r.small) },
			callBody(calls.OpMemcpyDtoH, &calls.Call{Dev: dev, Src: r.small, N: 4, Stream: r.stream.Handle()})},
		{"sync/stream-synchronize", func() error { return r.c.StreamSynchronize(r.stream) },
			callBody(calls.OpStreamSynchronize, &calls.Call{Dev: dev, Stream: r.stream.Handle()})},
	}
	for _, tc := range cases {
		ls, err := r.latencies(tc.xgpu,
			func() error { return r.pc.echo(tc.body) },
			func() error { return r.tcp.echo(tc.body) })
		if err != nil {
			return err
		}
		r.add(Result{
			Name: tc.name, Group: GroupSync, Unit: UnitMicros,
			XGPU: quantile(ls[0], 0.5), XGPUP99: quantile(ls[0], 0.99),
			Baseline: quantile(ls[1], 0.5), BaselineP99: quantile(ls[1], 0.99),
			BaselineName:  "raw request/response, QUIC call stream",
			Reference:     quantile(ls[2], 0.5),
			ReferenceP99:  quantile(ls[2], 0.99),
			ReferenceName: "raw request/response, TCP",
			Rounds:        r.opt.Rounds, Samples: len(ls[0]),
		})
	}
	return nil
}

func (r *runner) asyncGroup() error {
	const memsetBytes = 256
	n := r.opt.AsyncCalls
	body := callBody(calls.OpMemset, &calls.Call{Dev: uint32(r.env.DevA), Dst: r.small, Aux2: 1, N: memsetBytes, Stream: r.stream.Handle()})
	xgpu := func() error {
		for i := range n {
			if err := r.c.MemsetAsync(r.small, byte(i), memsetBytes, r.stream); err != nil {
				return err
			}
		}
		return r.c.StreamSynchronize(r.stream)
	}
	rs, err := r.rates(float64(n), xgpu, func() error { return r.pc.frames(n, body) })
	if err != nil {
		return err
	}
	r.add(Result{
		Name: fmt.Sprintf("async/memset-%dB", memsetBytes), Group: GroupAsync, Unit: UnitRate,
		XGPU: rs[0], XGPUName: fmt.Sprintf("%d cudaMemsetAsync then cudaStreamSynchronize", n),
		Baseline: rs[1], BaselineName: "raw framed writes, QUIC call stream",
		Rounds: r.opt.Rounds, Samples: r.opt.Rounds,
	})
	return nil
}

// reps is how many copies of n bytes make one round.
func (r *runner) reps(n int64) int {
	return int(max(1, (r.opt.RoundBytes+n-1)/n))
}

// repeat returns a method that runs f reps times.
func repeat(reps int, f func() error) method {
	return func() error {
		for range reps {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	}
}

// copyMethods returns xgpu's copy of n bytes in group g and its
// baselines, one copy each.
func (r *runner) copyMethods(g string, n int64) []func() error {
	switch g {
	case GroupH2D:
		p := r.src[:n]
		return []func() error{
			func() error { return r.c.MemcpyHtoD(r.bufA, p) },
			func() error { return r.tcp.sink(p) },
			func() error { return r.pc.sinkQUIC(r.ctx, p) },
		}
	case GroupD2H:
		p := r.dst[:n]
		return []func() error{
			func() error { return r.c.MemcpyDtoH(p, r.bufA) },
			func() error { return r.tcp.source(p) },
			func() error { return r.pc.sourceQUIC(r.ctx, p) },
		}
	default: // GroupPeer
		return []func() error{
			func() error { return r.c.MemcpyPeer(r.bufB, r.env.DevB, r.bufA, r.env.DevA, uint64(n)) },
			func() error { return r.pc.push(int(n), r.env.PeerB) },
		}
	}
}

// copyGroup measures the copies of group g (h2d, d2h or peer) at every
// size.
func (r *runner) copyGroup(g string) error {
	sizes := slices.Sorted(slices.Values(r.opt.Sizes))
	// One untimed copy of the largest size per method warms the
	// connections and faults in every buffer: each case copies a prefix
	// of the same memory.
	for _, f := range r.copyMethods(g, sizes[len(sizes)-1]) {
		if err := f(); err != nil {
			return err
		}
	}
	for _, n := range sizes {
		reps := r.reps(n)
		var ms []method
		for _, f := range r.copyMethods(g, n) {
			ms = append(ms, repeat(reps, f))
		}
		before := payload(r.c.Stats())
		rs, err := r.timedRates(float64(int64(reps)*n)/1e9, ms...)
		if err != nil {
			return err
		}
		res := Result{
			Name: g + "/" + SizeName(n), Group: g, Unit: UnitGBps, Bytes: n,
			XGPU: rs[0], Baseline: rs[1], BaselineName: "one TCP connection",
			Rounds: r.opt.Rounds, Samples: r.opt.Rounds * reps,
		}
		switch g {
		case GroupH2D, GroupD2H:
			res.XGPUName = map[string]string{GroupH2D: "cudaMemcpy host to device", GroupD2H: "cudaMemcpy device to host"}[g]
			res.Reference = rs[2]
			res.ReferenceName = fmt.Sprintf("raw striped QUIC bulk, %d lanes", r.pc.c.BulkLanes())
		case GroupPeer:
			moved := payload(r.c.Stats()) - before
			res.XGPUName = "cudaMemcpyPeer between devices of two servers"
			res.BaselineName = fmt.Sprintf("raw striped QUIC bulk between two processes, %d lanes", r.pc.c.BulkLanes())
			res.ClientPayloadBytes = &moved
		}
		r.add(res)
	}
	return nil
}

// payload is the copy payload that crossed the client's connections.
func payload(s runtime.Stats) uint64 { return s.PayloadSent() + s.PayloadReceived() }

// lane returns a connection to PeerA with n bulk lanes.
func (r *runner) lane(n int) (*peerClient, error) {
	if n == peers.DefaultBulkLanes {
		return r.pc, nil
	}
	if pc, ok := r.lanes[n]; ok {
		return pc, nil
	}
	pc, err := dialPeerQUIC(r.ctx, r.env.PeerA, &peers.Config{BulkLanes: n})
	if err != nil {
		return nil, err
	}
	if r.lanes == nil {
		r.lanes = make(map[int]*peerClient)
	}
	r.lanes[n] = pc
	return pc, nil
}

func (r *runner) transportGroup() error {
	n := r.opt.TransportSize
	p := r.src[:n]
	reps := r.reps(n)
	one, err := r.lane(1)
	if err != nil {
		return err
	}
	names := []string{"quic-1-stream"}
	ms := []method{
		repeat(reps, func() error { return r.tcp.sink(p) }),
		repeat(reps, func() error { return one.sinkStream(r.ctx, p) }),
	}
	for _, l := range transportLanes {
		pc, err := r.lane(l)
		if err != nil {
			return err
		}
		names = append(names, fmt.Sprintf("striped-%d-lane%s", l, map[bool]string{true: "s"}[l > 1]))
		ms = append(ms, repeat(reps, func() error { return pc.sinkQUIC(r.ctx, p) }))
	}
	rs, err := r.rates(float64(int64(reps)*n)/1e9, ms...)
	if err != nil {
		return err
	}
	for i, name := range names {
		what := "one raw QUIC stream (peers OpenBulk)"
		if i > 0 {
			what = fmt.Sprintf("peers SendBulk striped over %d lane(s)", transportLanes[i-1])
		}
		r.add(Result{
			Name: "transport/" + name + "/" + SizeName(n), Group: GroupTransport, Unit: UnitGBps, Bytes: n,
			XGPU: rs[i+1], XGPUName: what,
			Baseline: rs[0], BaselineName: "one TCP connection",
			Rounds: r.opt.Rounds, Samples: r.opt.Rounds * reps,
		})
	}
	return nil
}
