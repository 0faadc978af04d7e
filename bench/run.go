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
	GroupSync      = "sync"       // synchronous call round trips
	GroupAsync     = "async"      // pipelined asynchronous call rate
	GroupLaunch    = "launch"     // pipelined kernel launch rate (native runs)
	GroupH2D       = "h2d"        // host to device copies
	GroupD2H       = "d2h"        // device to host copies
	GroupPeerLocal = "peer-local" // device to device copies within one server (native runs)
	GroupPeer      = "peer"       // device to device copies between two servers
	GroupAllReduce = "allreduce"  // all-reduce bus bandwidth over a communicator of several devices
	GroupTransport = "transport"  // the data-plane transport's bulk lanes against TCP
)

// Groups lists every case group in the order Run measures them.
var Groups = []string{GroupSync, GroupAsync, GroupLaunch, GroupH2D, GroupD2H, GroupPeerLocal, GroupPeer, GroupAllReduce, GroupTracing, GroupTransport}

// NativeGroups are the groups whose only baseline is native CUDA: a run
// without Env.Native leaves them out (and refuses them when asked for).
var NativeGroups = []string{GroupLaunch, GroupPeerLocal}

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
	// Sizes are the copy sizes of the h2d, d2h, peer-local and peer
	// groups and the all-reduce sizes of the allreduce group, in bytes,
	// each at most MaxSize. Zero: DefaultSizes.
	Sizes []int64 `json:"sizes"`
	// Groups are the case groups to run (see Groups). Zero: all that
	// the Env can run (no NativeGroups without Env.Native). In a Report:
	// the groups that ran.
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
// its own; on the cuda backend also the native program (Native).
type Env struct {
	// Client is the xgpu client under test. Required.
	Client *runtime.Client
	// DevA and DevB are logical devices of Client on two different
	// servers. DevA takes the host copies and is the source of peer
	// copies; DevB is their destination.
	DevA, DevB int
	// DevA2 is a second logical device on DevA's server, the destination
	// of the peer-local group, which needs it to differ from DevA. Zero:
	// device 0.
	DevA2 int
	// Ranks are the logical devices of the allreduce group's
	// communicator, rank r on Ranks[r], at least two. The case names
	// count them per server: allreduce/2x2/<size> is two servers with
	// two ranks each. The link bound, the group's host baseline, needs
	// the ranks on exactly two servers (PeerA and PeerB stand for their
	// workers). Zero: DevA and DevB.
	Ranks []int
	// NCCL is the allreduce group's native baseline on a GPU machine:
	// NCCL through torch.distributed (StartNCCL), one process per GPU of
	// Ranks in the same order. With it the link bound is the reference.
	// Zero (nil): the link bound is the baseline (a host run).
	NCCL Native
	// Native measures the native CUDA baselines of a run on the cuda
	// backend (NativeProgram): with it, the sync, async, h2d, d2h and
	// peer-local groups compare xgpu with native CUDA on the same GPUs
	// and keep a transport figure as the reference, and the launch group
	// runs. Zero (nil): transport baselines only (a host run); the
	// NativeGroups are left out.
	Native Native
	// NativeDevs are the native program's device numbers of the GPUs of
	// DevA, DevA2 and DevB. Zero: device 0 for all three.
	NativeDevs NativeDevices
	// Skip names groups this environment cannot run, with the reason
	// (e.g. "needs 2 GPUs"); Run reports them as skipped. Zero: none.
	Skip map[string]string
	// GPU describes the GPUs in the report, e.g. "2 x NVIDIA H200".
	// Zero: not reported.
	GPU string
	// PeerA is the baseline of every case; PeerB receives the bulk data
	// PeerA pushes in the peer group's baseline. Required: PeerA, and
	// PeerB when the peer group runs.
	PeerA, PeerB PeerInfo
	// WorkerPath is how the workers of DevA's and DevB's servers move a
	// peer copy between them, so that the peer group's baseline (PeerA
	// pushing to PeerB) takes the same path: PathLocalLane when they run
	// on one host and join local lanes (their environment lacks
	// XGPU_LOCAL_LANE=0), PathQUIC otherwise. Zero (PathAuto): a local
	// lane when the client's sessions with both servers use one (both
	// workers are then on the client's host), QUIC otherwise.
	WorkerPath Path
	// Backend names the servers' device backend in the report. Zero:
	// not reported.
	Backend string
	// Setup describes the processes in the report. Zero: not reported.
	Setup string
}

// Path is how two processes of a run move bulk data between them.
type Path int

// Paths of Env.WorkerPath.
const (
	PathAuto      Path = iota // decide from the client's sessions (Env.WorkerPath)
	PathQUIC                  // striped QUIC bulk transfers (peers SendBulk over its lanes)
	PathLocalLane             // a local lane: shared memory on one host (peers OfferLocal, JoinLocal)
)

// String names p: "auto", "quic" or "local-lane".
func (p Path) String() string {
	switch p {
	case PathAuto:
		return "auto"
	case PathQUIC:
		return "quic"
	case PathLocalLane:
		return "local-lane"
	}
	return fmt.Sprintf("Path(%d)", int(p))
}

// NativeDevices are device numbers in the native program.
type NativeDevices struct {
	A, A2, B int // the GPUs of Env.DevA, Env.DevA2 and Env.DevB
}

// plan returns the groups Run runs, in order, and those it skips with the
// reason: asked (zero: every group) minus env.Skip, and minus the
// NativeGroups without a native baseline. It fails when a group asked for
// by name cannot run, or the Env lacks what a group needs.
func plan(env Env, asked []string) ([]string, []Skipped, error) {
	if env.WorkerPath < PathAuto || env.WorkerPath > PathLocalLane {
		return nil, nil, fmt.Errorf("bench: Env.WorkerPath %v is not a path", env.WorkerPath)
	}
	for g := range env.Skip {
		if !slices.Contains(Groups, g) {
			return nil, nil, fmt.Errorf("bench: Env.Skip names unknown group %q", g)
		}
	}
	explicit := len(asked) > 0
	if !explicit {
		asked = Groups
	}
	var run []string
	var skipped []Skipped
	for _, g := range Groups {
		if !slices.Contains(asked, g) {
			continue
		}
		if reason, ok := env.Skip[g]; ok {
			skipped = append(skipped, Skipped{Group: g, Reason: reason})
			continue
		}
		if env.Native == nil && slices.Contains(NativeGroups, g) {
			if explicit {
				return nil, nil, fmt.Errorf("bench: the %s group needs a native baseline (Env.Native, a run on the cuda backend)", g)
			}
			continue
		}
		run = append(run, g)
	}
	switch {
	case slices.Contains(run, GroupPeer) && env.PeerB.QUIC == "":
		return nil, nil, errors.New("bench: the peer group needs Env.PeerB")
	case slices.Contains(run, GroupPeer) && env.DevA == env.DevB:
		return nil, nil, errors.New("bench: the peer group needs two devices (Env.DevA, Env.DevB)")
	case slices.Contains(run, GroupPeerLocal) && env.DevA == env.DevA2:
		return nil, nil, errors.New("bench: the peer-local group needs two devices of one server (Env.DevA, Env.DevA2)")
	}
	if slices.Contains(run, GroupAllReduce) {
		if err := checkAllReduce(env); err != nil {
			return nil, nil, err
		}
	}
	return run, skipped, nil
}

// Run measures every selected case against its baseline, interleaved
// round by round in this one run, and returns the report. ctx stops it
// between operations. Run allocates on the two devices and frees what
// it allocated before it returns.
func Run(ctx context.Context, env Env, opt Options) (*Report, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	switch {
	case env.Client == nil:
		return nil, errors.New("bench: Env.Client is nil")
	case env.PeerA.QUIC == "" || env.PeerA.TCP == "":
		return nil, errors.New("bench: Env.PeerA has no address")
	}
	groups, skipped, err := plan(env, opt.Groups)
	if err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	opt.Groups = groups
	start := time.Now()
	rep := &Report{
		Version: ReportVersion, Machine: DescribeMachine(), Date: start.UTC().Format(time.RFC3339),
		Backend: env.Backend, GPU: env.GPU, Setup: env.Setup, Settings: opt, Cases: []Result{}, Skipped: skipped,
	}
	if w := opt.Progress; w != nil {
		for _, s := range skipped {
			fmt.Fprintf(w, "%-34s skipped: %s\n", s.Group, s.Reason)
		}
	}
	r := &runner{ctx: ctx, env: env, c: env.Client, opt: opt, rep: rep}
	defer r.close()
	if err := r.setup(); err != nil {
		return nil, err
	}
	for _, g := range groups {
		var err error
		switch g {
		case GroupSync:
			err = r.syncGroup()
		case GroupAsync:
			err = r.asyncGroup()
		case GroupLaunch:
			err = r.launchGroup()
		case GroupH2D, GroupD2H, GroupPeerLocal, GroupPeer:
			err = r.copyGroup(g)
		case GroupAllReduce:
			err = r.allReduceGroup()
		case GroupTracing:
			err = r.tracingGroup()
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

	pcB *peerClient // transport to PeerB, dialled by the allreduce group

	// local is a connection to PeerA with a local lane joined, dialled on
	// first use (localPeer); localErr is why there is none, once tried.
	local    *peerClient
	localErr error

	small  uint64 // 4 KiB on DevA
	bufA   uint64 // maxSize on DevA (0: none)
	bufA2  uint64 // maxSize on DevA2 (0: none)
	bufB   uint64 // maxSize on DevB (0: none)
	stream runtime.Stream
	mod    runtime.Module    // the launch group's module on DevA (zero: none)
	empty  *runtime.Function // its empty kernel
	src    []byte            // host source, filled
	dst    []byte            // host destination
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
	if r.has(GroupH2D) || r.has(GroupD2H) || r.has(GroupPeer) || r.has(GroupPeerLocal) {
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
	if maxSize > 0 && r.has(GroupPeerLocal) {
		if r.bufA2, err = r.c.Malloc(r.env.DevA2, uint64(maxSize)); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

func (r *runner) close() {
	for _, p := range []uint64{r.small, r.bufA, r.bufA2, r.bufB} {
		if p != 0 {
			_ = r.c.Free(p)
		}
	}
	if r.mod != (runtime.Module{}) {
		_ = r.c.UnloadModule(r.mod)
	}
	if r.stream.Handle() != 0 {
		_ = r.c.StreamDestroy(r.stream)
	}
	if r.pc != nil {
		_ = r.pc.close()
	}
	if r.pcB != nil {
		_ = r.pcB.close()
	}
	if r.tcp != nil {
		_ = r.tcp.close()
	}
	for _, pc := range r.lanes {
		_ = pc.close()
	}
	if r.local != nil {
		_ = r.local.close()
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

// rotated returns 0..n-1 rotated by k, so that no method always goes
// first in a round.
func rotated(n, k int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (i + k) % n
	}
	return out
}

// latMethod makes n calls of a latency case and appends each call's time
// in microseconds to out.
type latMethod func(n int, out []float64) ([]float64, error)

// timedCalls times each call of f.
func timedCalls(f func() error) latMethod {
	return func(n int, out []float64) ([]float64, error) {
		for range n {
			t := time.Now()
			if err := f(); err != nil {
				return out, err
			}
			out = append(out, float64(time.Since(t).Nanoseconds())/1e3)
		}
		return out, nil
	}
}

// nativeCalls has the native program make and time the calls of op on
// device dev.
func (r *runner) nativeCalls(op string, dev int) latMethod {
	return func(n int, out []float64) ([]float64, error) {
		figs, err := r.env.Native.Measure(r.ctx, NativeCommand{Op: op, Count: n, Dev: dev})
		if err != nil {
			return out, err
		}
		vs, err := values(figs, op, UnitMicros, n)
		if err != nil {
			return out, err
		}
		return append(out, vs...), nil
	}
}

// latencies runs every method opt.SyncCalls times per round, the
// methods taking turns round by round, and returns each method's call
// times in microseconds.
func (r *runner) latencies(ms ...latMethod) ([][]float64, error) {
	for _, m := range ms { // warm-up
		if _, err := m(min(50, r.opt.SyncCalls), nil); err != nil {
			return nil, err
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
			var err error
			if out[k], err = ms[k](r.opt.SyncCalls, out[k]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// rateMethod runs one round of a rate or throughput case and returns its
// figure: calls per second, or GB/s.
type rateMethod func() (float64, error)

// timed times f, which does units units of work (calls, or 10^9 bytes).
func timed(units float64, f func() error) rateMethod {
	return func() (float64, error) {
		t := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		return units / time.Since(t).Seconds(), nil
	}
}

// nativeRate has the native program run cmd, which times itself.
func (r *runner) nativeRate(cmd NativeCommand) rateMethod { return r.rateOf(r.env.Native, cmd) }

// rateOf has nat (the native program, or the NCCL baseline) run cmd,
// which times itself.
func (r *runner) rateOf(nat Native, cmd NativeCommand) rateMethod {
	return func() (float64, error) {
		figs, err := nat.Measure(r.ctx, cmd)
		if err != nil {
			return 0, err
		}
		vs, err := values(figs, cmd.Op, NativeUnit(cmd.Op), 1)
		if err != nil {
			return 0, err
		}
		if vs[0] <= 0 {
			return 0, fmt.Errorf("bench: native figure %s is %v", cmd.Op, vs[0])
		}
		return vs[0], nil
	}
}

// rates runs every method once per round, the methods taking turns round
// by round, after one untimed warm-up run each, and returns the median
// over rounds of each method's figure.
func (r *runner) rates(ms ...rateMethod) ([]float64, error) {
	for _, m := range ms {
		if _, err := m(); err != nil {
			return nil, err
		}
	}
	return r.timedRates(ms...)
}

func (r *runner) timedRates(ms ...rateMethod) ([]float64, error) {
	per := make([][]float64, len(ms))
	for round := range r.opt.Rounds {
		for _, k := range rotated(len(ms), round) {
			if err := r.ctx.Err(); err != nil {
				return nil, context.Cause(r.ctx)
			}
			v, err := ms[k]()
			if err != nil {
				return nil, err
			}
			per[k] = append(per[k], v)
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

// native reports whether the run has native baselines.
func (r *runner) native() bool { return r.env.Native != nil }

func (r *runner) syncGroup() error {
	out := make([]byte, 4)
	dev := uint32(r.env.DevA)
	cases := []struct {
		name, native, nativeName string
		xgpu                     func() error
		body                     []byte
	}{
		{"sync/d2h-4B", NativeD2H4, "native cudaMemcpy of 4 B, device to pageable host",
			func() error { return r.c.MemcpyDtoH(out, r.small) },
			callBody(calls.OpMemcpyDtoH, &calls.Call{Dev: dev, Src: r.small, N: 4, Stream: r.stream.Handle()})},
		{"sync/stream-synchronize", NativeStreamSync, "native cudaStreamSynchronize of an idle stream",
			func() error { return r.c.StreamSynchronize(r.stream) },
			callBody(calls.OpStreamSynchronize, &calls.Call{Dev: dev, Stream: r.stream.Handle()})},
	}
	for _, tc := range cases {
		quic := timedCalls(func() error { return r.pc.echo(tc.body) })
		ms := []latMethod{timedCalls(tc.xgpu), quic, timedCalls(func() error { return r.tcp.echo(tc.body) })}
		names := []string{"raw request/response, QUIC call stream", "raw request/response, TCP"}
		if r.native() {
			ms = []latMethod{ms[0], r.nativeCalls(tc.native, r.env.NativeDevs.A), quic}
			names = []string{tc.nativeName, names[0]}
		}
		ls, err := r.latencies(ms...)
		if err != nil {
			return err
		}
		r.add(Result{
			Name: tc.name, Group: GroupSync, Unit: UnitMicros,
			XGPU: quantile(ls[0], 0.5), XGPUP99: quantile(ls[0], 0.99),
			Baseline: quantile(ls[1], 0.5), BaselineP99: quantile(ls[1], 0.99),
			BaselineName:  names[0],
			Reference:     quantile(ls[2], 0.5),
			ReferenceP99:  quantile(ls[2], 0.99),
			ReferenceName: names[1],
			Rounds:        r.opt.Rounds, Samples: len(ls[0]),
		})
	}
	return nil
}

// asyncResult records a rate case: xgpu, then either its native baseline
// and the raw frames as reference, or the raw frames as baseline.
func (r *runner) asyncResult(res Result, rs []float64, nativeName string) {
	const frames = "raw framed writes, QUIC call stream"
	res.Unit, res.Rounds, res.Samples = UnitRate, r.opt.Rounds, r.opt.Rounds
	res.XGPU, res.Baseline = rs[0], rs[1]
	if r.native() {
		res.BaselineName = nativeName
		res.Reference, res.ReferenceName = rs[2], frames
	} else {
		res.BaselineName = frames
	}
	r.add(res)
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
	frames := timed(float64(n), func() error { return r.pc.frames(n, body) })
	ms := []rateMethod{timed(float64(n), xgpu), frames}
	if r.native() {
		ms = []rateMethod{ms[0], r.nativeRate(NativeCommand{Op: NativeMemset, Count: n, Dev: r.env.NativeDevs.A}), frames}
	}
	rs, err := r.rates(ms...)
	if err != nil {
		return err
	}
	r.asyncResult(Result{
		Name: fmt.Sprintf("async/memset-%dB", memsetBytes), Group: GroupAsync,
		XGPUName: fmt.Sprintf("%d cudaMemsetAsync then cudaStreamSynchronize", n),
	}, rs, fmt.Sprintf("native: %d cudaMemsetAsync then cudaStreamSynchronize", n))
	return nil
}

// emptyKernelName is the kernel of emptyKernelPTX.
const emptyKernelName = "xgpu_bench_empty"

// emptyKernelPTX is a kernel that does nothing, as PTX, which the cuda
// backend loads without nvcc (the driver compiles it for the GPU).
const emptyKernelPTX = `.version 7.0
.target sm_70
.address_size 64

.visible .entry xgpu_bench_empty()
{
	ret;
}
`

func (r *runner) launchGroup() error {
	if r.empty == nil {
		m, err := r.c.LoadModule(r.env.DevA, []byte(emptyKernelPTX))
		if err != nil {
			return fmt.Errorf("load the empty kernel: %w", err)
		}
		r.mod = m
		if r.empty, err = r.c.GetFunction(m, emptyKernelName); err != nil {
			return fmt.Errorf("load the empty kernel: %w", err)
		}
	}
	n := r.opt.AsyncCalls
	one := runtime.Dim3{X: 1, Y: 1, Z: 1}
	body := callBody(calls.OpLaunchKernel, &calls.Call{Dev: uint32(r.env.DevA), Stream: r.stream.Handle(), Aux: r.empty.Handle(),
		Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{1, 1, 1}})
	xgpu := func() error {
		for range n {
			if err := r.c.LaunchKernelPacked(r.empty, one, one, 0, r.stream, nil); err != nil {
				return err
			}
		}
		return r.c.StreamSynchronize(r.stream)
	}
	rs, err := r.rates(timed(float64(n), xgpu),
		r.nativeRate(NativeCommand{Op: NativeLaunch, Count: n, Dev: r.env.NativeDevs.A}),
		timed(float64(n), func() error { return r.pc.frames(n, body) }))
	if err != nil {
		return err
	}
	r.asyncResult(Result{
		Name: "launch/empty-kernel", Group: GroupLaunch,
		XGPUName: fmt.Sprintf("%d launches of an empty kernel (PTX) <<<1, 1>>> then cudaStreamSynchronize", n),
	}, rs, fmt.Sprintf("native: %d launches of an empty kernel <<<1, 1>>> then cudaStreamSynchronize", n))
	return nil
}

// reps is how many copies of n bytes make one round.
func (r *runner) reps(n int64) int {
	return int(max(1, (r.opt.RoundBytes+n-1)/n))
}

// repeat returns a function that runs f reps times.
func repeat(reps int, f func() error) func() error {
	return func() error {
		for range reps {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	}
}

// Roles of a copy method in its case's Result.
const (
	roleXGPU = iota
	roleBaseline
	roleReference
	roleExtra
)

// copyMethod is one way of making the copies of a case.
type copyMethod struct {
	role  int
	name  string
	round func(n int64, reps int) rateMethod // reps copies of n bytes, in GB/s
}

// goCopy is a copy method the runner times; one(n) makes one copy of n
// bytes.
func goCopy(role int, name string, one func(n int64) func() error) copyMethod {
	return copyMethod{role: role, name: name, round: func(n int64, reps int) rateMethod {
		return timed(float64(int64(reps)*n)/1e9, repeat(reps, one(n)))
	}}
}

// nativeCopy is a copy method of the native program.
func (r *runner) nativeCopy(role int, name, op string, dev, peer int) copyMethod {
	return copyMethod{role: role, name: name, round: func(n int64, reps int) rateMethod {
		return r.nativeRate(NativeCommand{Op: op, Count: reps, Bytes: n, Dev: dev, Peer: peer})
	}}
}

// Names of the raw bulk references.
const (
	nameLocalLane   = "raw local lane (shared memory)"
	nameLocalLanePP = "raw local lane (shared memory) between two processes"
)

// quicName names the raw striped QUIC reference.
func (r *runner) quicName() string {
	return fmt.Sprintf("raw striped QUIC bulk, %d lanes", r.pc.c.BulkLanes())
}

// onLane reports whether, for each of devs, the client's session that
// holds it moves its bulk data through a local lane (runtime Stats).
func (r *runner) onLane(devs ...int) bool {
	sessions := r.c.Stats().Sessions
	for _, d := range devs {
		i := slices.IndexFunc(sessions, func(s runtime.SessionStats) bool { return slices.Contains(s.Devices, d) })
		if i < 0 || !sessions[i].LocalLane {
			return false
		}
	}
	return true
}

// localPeer returns a connection to PeerA with a local lane joined,
// dialling it the first time. Where this platform or the peer's has no
// local lanes the error wraps peers.ErrLocalUnsupported.
func (r *runner) localPeer() (*peerClient, error) {
	if r.local == nil && r.localErr == nil {
		r.local, r.localErr = dialPeerLocal(r.ctx, r.env.PeerA, nil)
	}
	return r.local, r.localErr
}

// hostPath returns the connection to PeerA whose raw striped transfers
// are the reference of the h2d and d2h copies, and its name: the path the
// session's bytes take. When the client's session with DevA's server uses
// a local lane, that is a lane-joined connection (QUIC where the peer has
// no local lanes, named so); otherwise QUIC.
func (r *runner) hostPath() (*peerClient, string, error) {
	if r.onLane(r.env.DevA) {
		pc, err := r.localPeer()
		switch {
		case err == nil:
			return pc, nameLocalLane, nil
		case !errors.Is(err, peers.ErrLocalUnsupported):
			return nil, "", fmt.Errorf("the client's session uses a local lane, but none to baseline peer A: %w", err)
		}
	}
	return r.pc, r.quicName(), nil
}

// peerPath reports whether the peer group's baseline pushes through a
// local lane (Env.WorkerPath), and names it. When a lane is wanted, one
// small push sets it up; where the peers have no local lanes the push
// goes over QUIC, named so.
func (r *runner) peerPath() (bool, string, error) {
	return r.linkPath([]int{r.env.DevA, r.env.DevB}, false)
}

// linkPath reports whether raw bulk between the baseline peers, standing
// for the workers of devs, goes through a local lane (Env.WorkerPath;
// PathAuto: when the client's sessions with all of them use one), and
// names it. When a lane is wanted, one small push from A to B sets it up,
// and if both, one from B to A too (r.pcB); where the peers have no local
// lanes the pushes go over QUIC, named so.
func (r *runner) linkPath(devs []int, both bool) (bool, string, error) {
	lane := r.env.WorkerPath == PathLocalLane || r.env.WorkerPath == PathAuto && r.onLane(devs...)
	if lane {
		err := r.pc.push(1, r.env.PeerB, true)
		if err == nil && both {
			err = r.pcB.push(1, r.env.PeerA, true)
		}
		switch {
		case err == nil:
			return true, nameLocalLanePP, nil
		case !errors.Is(err, peers.ErrLocalUnsupported):
			return false, "", fmt.Errorf("the workers' link uses a local lane, but the baseline peers join none: %w", err)
		}
	}
	return false, fmt.Sprintf("raw striped QUIC bulk between two processes, %d lanes", r.pc.c.BulkLanes()), nil
}

// copyMethods returns the methods of group g's copies: xgpu's first.
func (r *runner) copyMethods(g string) ([]copyMethod, error) {
	nd := r.env.NativeDevs
	switch g {
	case GroupH2D:
		ref, refName, err := r.hostPath()
		if err != nil {
			return nil, err
		}
		xgpu := goCopy(roleXGPU, "cudaMemcpy host to device", func(n int64) func() error {
			p := r.src[:n]
			return func() error { return r.c.MemcpyHtoD(r.bufA, p) }
		})
		raw := func(role int) copyMethod {
			return goCopy(role, refName, func(n int64) func() error {
				p := r.src[:n]
				return func() error { return ref.sinkBulk(r.ctx, p) }
			})
		}
		if r.native() {
			xgpu.name = "cudaMemcpy host to device, from the client's pageable memory"
			return []copyMethod{xgpu,
				r.nativeCopy(roleBaseline, "native cudaMemcpy from pageable host memory", NativeH2DPageable, nd.A, 0),
				raw(roleReference),
				r.nativeCopy(roleExtra, "native pinned cudaMemcpy", NativeH2DPinned, nd.A, 0)}, nil
		}
		return []copyMethod{xgpu,
			goCopy(roleBaseline, "one TCP connection", func(n int64) func() error {
				p := r.src[:n]
				return func() error { return r.tcp.sink(p) }
			}),
			raw(roleReference)}, nil
	case GroupD2H:
		ref, refName, err := r.hostPath()
		if err != nil {
			return nil, err
		}
		xgpu := goCopy(roleXGPU, "cudaMemcpy device to host", func(n int64) func() error {
			p := r.dst[:n]
			return func() error { return r.c.MemcpyDtoH(p, r.bufA) }
		})
		raw := func(role int) copyMethod {
			return goCopy(role, refName, func(n int64) func() error {
				p := r.dst[:n]
				return func() error { return ref.sourceBulk(r.ctx, p) }
			})
		}
		if r.native() {
			xgpu.name = "cudaMemcpy device to host, into the client's pageable memory"
			return []copyMethod{xgpu,
				r.nativeCopy(roleBaseline, "native cudaMemcpy to pageable host memory", NativeD2HPageable, nd.A, 0),
				raw(roleReference),
				r.nativeCopy(roleExtra, "native pinned cudaMemcpy", NativeD2HPinned, nd.A, 0)}, nil
		}
		return []copyMethod{xgpu,
			goCopy(roleBaseline, "one TCP connection", func(n int64) func() error {
				p := r.dst[:n]
				return func() error { return r.tcp.source(p) }
			}),
			raw(roleReference)}, nil
	case GroupPeerLocal:
		return []copyMethod{
			goCopy(roleXGPU, "cudaMemcpyPeer between two devices of one server", func(n int64) func() error {
				return func() error { return r.c.MemcpyPeer(r.bufA2, r.env.DevA2, r.bufA, r.env.DevA, uint64(n)) }
			}),
			r.nativeCopy(roleBaseline, "native cudaMemcpyPeer between the same GPUs, each copy synchronized", NativePeer, nd.A, nd.A2),
		}, nil
	default: // GroupPeer
		lane, name, err := r.peerPath()
		if err != nil {
			return nil, err
		}
		ms := []copyMethod{
			goCopy(roleXGPU, "cudaMemcpyPeer between devices of two servers", func(n int64) func() error {
				return func() error { return r.c.MemcpyPeer(r.bufB, r.env.DevB, r.bufA, r.env.DevA, uint64(n)) }
			}),
			goCopy(roleBaseline, name, func(n int64) func() error {
				return func() error { return r.pc.push(int(n), r.env.PeerB, lane) }
			}),
		}
		if r.native() {
			ms = append(ms, r.nativeCopy(roleReference, "native cudaMemcpyPeer between the same GPUs, each copy synchronized", NativePeer, nd.A, nd.B))
		}
		return ms, nil
	}
}

// copyGroup measures the copies of group g (h2d, d2h, peer-local or
// peer) at every size.
func (r *runner) copyGroup(g string) error {
	methods, err := r.copyMethods(g)
	if err != nil {
		return err
	}
	return r.sizedCases(g, g+"/", slices.Sorted(slices.Values(r.opt.Sizes)), methods, g == GroupPeer, func(res *Result) {
		if r.native() && (g == GroupH2D || g == GroupD2H) {
			res.Overlap = overlapOf(res.XGPU, res.Reference, res.Extra[0].Value)
		}
	})
}

// sizedCases measures methods (xgpu's first) at every size of sizes, in
// increasing order, and records one case of group g per size, named
// prefix and the size; with payload it records the copy payload that
// crossed the client's connections during each (Result.ClientPayloadBytes);
// finish, if not nil, completes each Result before it is recorded.
func (r *runner) sizedCases(g, prefix string, sizes []int64, methods []copyMethod, payloadCheck bool, finish func(*Result)) error {
	// One untimed round of the largest size per method warms the
	// connections and faults in every buffer: each case works on a prefix
	// of the same memory.
	for _, m := range methods {
		if _, err := m.round(sizes[len(sizes)-1], 1)(); err != nil {
			return err
		}
	}
	for _, n := range sizes {
		reps := r.reps(n)
		ms := make([]rateMethod, len(methods))
		for i, m := range methods {
			ms[i] = m.round(n, reps)
		}
		before := payload(r.c.Stats())
		rs, err := r.timedRates(ms...)
		if err != nil {
			return err
		}
		res := Result{
			Name: prefix + SizeName(n), Group: g, Unit: UnitGBps, Bytes: n,
			Rounds: r.opt.Rounds, Samples: r.opt.Rounds * reps,
		}
		for i, m := range methods {
			switch m.role {
			case roleXGPU:
				res.XGPU, res.XGPUName = rs[i], m.name
			case roleBaseline:
				res.Baseline, res.BaselineName = rs[i], m.name
			case roleReference:
				res.Reference, res.ReferenceName = rs[i], m.name
			case roleExtra:
				res.Extra = append(res.Extra, Extra{Name: m.name, Value: rs[i], Ratio: ratio(rs[0], rs[i])})
			}
		}
		if payloadCheck {
			moved := payload(r.c.Stats()) - before
			res.ClientPayloadBytes = &moved
		}
		if finish != nil {
			finish(&res)
		}
		r.add(res)
	}
	return nil
}

// overlapOf relates a host copy through xgpu to its two stages: the
// transport between client and server, and the server's DMA from pinned
// staging memory.
func overlapOf(xgpu, transport, dma float64) *Overlap {
	o := &Overlap{Transport: transport, DMA: dma, Bound: min(transport, dma)}
	if transport > 0 && dma > 0 {
		o.Serial = 1 / (1/transport + 1/dma)
	}
	o.OfBound = ratio(xgpu, o.Bound)
	return o
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
	units := float64(int64(reps)*n) / 1e9
	one, err := r.lane(1)
	if err != nil {
		return err
	}
	type variant struct {
		name, what string
		m          rateMethod
	}
	vs := []variant{{"quic-1-stream", "one raw QUIC stream (peers OpenBulk)",
		timed(units, repeat(reps, func() error { return one.sinkStream(r.ctx, p) }))}}
	for _, l := range transportLanes {
		pc, err := r.lane(l)
		if err != nil {
			return err
		}
		vs = append(vs, variant{
			fmt.Sprintf("striped-%d-lane%s", l, map[bool]string{true: "s"}[l > 1]),
			fmt.Sprintf("peers SendBulk striped over %d lane(s)", l),
			timed(units, repeat(reps, func() error { return pc.sinkBulk(r.ctx, p) })),
		})
	}
	switch local, err := r.localPeer(); {
	case err == nil:
		vs = append(vs, variant{"local-lane", "peers SendBulk through a local lane (shared memory)",
			timed(units, repeat(reps, func() error { return local.sinkBulk(r.ctx, p) }))})
	case errors.Is(err, peers.ErrLocalUnsupported):
		r.skip(GroupTransport+"/local-lane", err.Error())
	default:
		return err
	}
	ms := []rateMethod{timed(units, repeat(reps, func() error { return r.tcp.sink(p) }))}
	for _, v := range vs {
		ms = append(ms, v.m)
	}
	rs, err := r.rates(ms...)
	if err != nil {
		return err
	}
	for i, v := range vs {
		r.add(Result{
			Name: "transport/" + v.name + "/" + SizeName(n), Group: GroupTransport, Unit: UnitGBps, Bytes: n,
			XGPU: rs[i+1], XGPUName: v.what,
			Baseline: rs[0], BaselineName: "one TCP connection",
			Rounds: r.opt.Rounds, Samples: r.opt.Rounds * reps,
		})
	}
	return nil
}

// skip records cases of a group that this run leaves out, and why.
func (r *runner) skip(what, reason string) {
	r.rep.Skipped = append(r.rep.Skipped, Skipped{Group: what, Reason: reason})
	if w := r.opt.Progress; w != nil {
		fmt.Fprintf(w, "%-34s skipped: %s\n", what, reason)
	}
}
