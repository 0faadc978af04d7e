package core

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// Stream capture. A stream in capture mode does not run the work queued on
// it: each asynchronous call becomes a node of the capture's graph,
// depending on the nodes the stream's earlier work became (its
// dependency set). An event recorded in a capturing stream carries that
// set instead of a point in the stream; a stream that waits for such an
// event joins the capture (fork) or merges the set into its own (join).
//
// Hot paths pay one atomic load (graphState.active) while no capture is in
// progress anywhere in the process; everything else lives under
// graphState.mu.

// Capture modes: the values of cudaStreamCaptureMode.
const (
	CaptureModeGlobal      = 0
	CaptureModeThreadLocal = 1
	CaptureModeRelaxed     = 2
)

// Capture statuses: the values of cudaStreamCaptureStatus.
const (
	CaptureStatusNone        = 0
	CaptureStatusActive      = 1
	CaptureStatusInvalidated = 2
)

// Flags of cudaStreamWaitEvent and cudaEventRecordWithFlags that matter to
// capture, and of cudaStreamUpdateCaptureDependencies.
const (
	EventWaitExternal          = 0x1 // cudaEventWaitExternal: a wait node on an event outside the capture
	EventRecordExternal        = 0x1 // cudaEventRecordExternal: a record node instead of a captured record
	CaptureDependenciesAdd     = 0x0 // cudaStreamAddCaptureDependencies
	CaptureDependenciesReplace = 0x1 // cudaStreamSetCaptureDependencies
)

// graphState holds the graphs, their nodes, the executable graphs and the
// captures in progress.
type graphState struct {
	// active counts the captures in progress (invalidated ones too, until
	// they end). It is the only field the hot paths read.
	active atomic.Int32

	mu       sync.Mutex // guards the fields below and every graph and node
	graphs   map[uint64]*graph
	nodes    map[uint64]*node
	next     uint64                    // the next graph or node handle
	streams  map[uint64]*streamCapture // stream handle -> its part in a capture
	events   map[uint64]*eventCapture  // event handle -> its record in a capture
	captures uint64                    // the last capture id handed out

	execs table[*graphExec]
}

// capture is one capture sequence.
type capture struct {
	id      uint64
	g       *graph
	origin  uint64 // the stream that began it, and must end it
	mode    int
	thread  uint64 // the thread that began it
	err     error  // why it was invalidated; nil while valid
	streams []uint64
	events  []uint64
}

// streamCapture is a stream's part in a capture.
type streamCapture struct {
	c        *capture
	dev      int
	blocking bool    // created without cudaStreamNonBlocking: the legacy stream waits for it
	deps     []*node // what the stream's next node depends on
}

// eventCapture is an event recorded in a capturing stream.
type eventCapture struct {
	c    *capture
	deps []*node
}

func (g *graphState) initLocked() {
	if g.graphs == nil {
		g.graphs = make(map[uint64]*graph)
		g.nodes = make(map[uint64]*node)
		g.streams = make(map[uint64]*streamCapture)
		g.events = make(map[uint64]*eventCapture)
		g.next = firstHandle
	}
}

func (g *graphState) handleLocked() uint64 {
	h := g.next
	g.next++
	return h
}

// invalidateLocked marks c invalidated by err; its streams stay in capture
// mode until it ends.
func invalidateLocked(c *capture, err error) {
	if c.err == nil {
		c.err = err
	}
}

// errCaptureInvalidated is the error of work queued on a stream of an
// invalidated capture.
func errCaptureInvalidated(c *capture) error {
	return fmt.Errorf("core: capture %d was invalidated (%v): %w", c.id, c.err, cudaerr.StreamCaptureInvalidated)
}

// streamEntryOf returns the device and blocking flag of stream handle h.
func (s *Shim) streamEntryOf(h uint64) (dev int, blocking bool, err error) {
	e, ok := s.streams.get(h)
	if !ok {
		return 0, false, fmt.Errorf("core: stream handle %#x: %w", h, cudaerr.InvalidResourceHandle)
	}
	return e.st.Device(), e.flags&runtime.StreamNonBlocking == 0, nil
}

// implicitLocked checks a use of dev's legacy stream against the captures
// in progress: while a blocking stream of dev captures, any use of the
// legacy stream would make it depend on the capture. Such a use fails with
// cudaErrorStreamCaptureImplicit and, when invalidate is set, invalidates
// those captures.
func (g *graphState) implicitLocked(op string, dev int, invalidate bool) error {
	var err error
	for h, sc := range g.streams {
		if sc.dev != dev || !sc.blocking {
			continue
		}
		if err == nil {
			err = fmt.Errorf("core: %s on the legacy stream of device %d while blocking stream %#x captures: %w",
				op, dev, h, cudaerr.StreamCaptureImplicit)
		}
		if invalidate {
			invalidateLocked(sc.c, err)
		}
	}
	return err
}

// captureTarget is what queueing work on stream h of dev means while a
// capture is in progress: sc is the stream's capture (the work becomes a
// node), or, with sc nil and no error, the work runs as usual.
func (s *Shim) captureTargetLocked(op string, dev int, h uint64) (*streamCapture, error) {
	g := &s.graphs
	if h == 0 {
		return nil, g.implicitLocked(op, dev, true)
	}
	sc := g.streams[h]
	if sc == nil {
		return nil, nil
	}
	if sc.c.err != nil {
		return nil, errCaptureInvalidated(sc.c)
	}
	return sc, nil
}

// captureOp makes o a node of stream h's capture when h (of dev) is
// capturing. It reports false, with no error, when the work is to run as
// usual.
func (s *Shim) captureOp(op string, dev int, h uint64, o nodeOp) (bool, error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	sc, err := s.captureTargetLocked(op, dev, h)
	if err != nil || sc == nil {
		return false, err
	}
	n := g.addNodeLocked(sc.c.g, o, sc.deps)
	sc.deps = append(sc.deps[:0:0], n)
	return true, nil
}

// refuseCaptured fails an operation CUDA does not capture (or xgpu does
// not) when stream h is capturing, invalidating the capture, and checks a
// use of the legacy stream.
func (s *Shim) refuseCaptured(op string, dev int, h uint64) error {
	if s.graphs.active.Load() == 0 {
		return nil
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	sc, err := s.captureTargetLocked(op, dev, h)
	if err != nil || sc == nil {
		return err
	}
	err = fmt.Errorf("core: %s cannot be captured (stream %#x): %w", op, h, cudaerr.StreamCaptureUnsupported)
	invalidateLocked(sc.c, err)
	return err
}

// checkSync checks a call that waits for stream h of dev (0: its legacy
// stream) or queries it: a capturing stream cannot be waited for (the work
// in it does not run), and the call invalidates its capture.
func (s *Shim) checkSync(op string, dev int, h uint64) error {
	if s.graphs.active.Load() == 0 {
		return nil
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	if h == 0 {
		return g.implicitLocked(op, dev, true)
	}
	sc := g.streams[h]
	if sc == nil {
		return nil
	}
	err := fmt.Errorf("core: %s of stream %#x, which is capturing: %w", op, h, cudaerr.StreamCaptureUnsupported)
	invalidateLocked(sc.c, err)
	return err
}

// checkDeviceSync checks a call that waits for all of dev's work: it
// cannot while a stream of dev captures, and invalidates those captures.
func (s *Shim) checkDeviceSync(op string, dev int) error {
	if s.graphs.active.Load() == 0 {
		return nil
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	var err error
	for h, sc := range g.streams {
		if sc.dev != dev {
			continue
		}
		if err == nil {
			err = fmt.Errorf("core: %s of device %d while its stream %#x captures: %w", op, dev, h, cudaerr.StreamCaptureUnsupported)
		}
		invalidateLocked(sc.c, err)
	}
	return err
}

// checkEvent checks a call that waits for or queries event e: not while
// its last record is part of a capture in progress (that record never
// runs); the call invalidates the capture.
func (s *Shim) checkEvent(op string, e uint64) error {
	if s.graphs.active.Load() == 0 {
		return nil
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	ec := g.events[e]
	if ec == nil {
		return nil
	}
	err := fmt.Errorf("core: %s of event %#x, last recorded in capture %d: %w", op, e, ec.c.id, cudaerr.CapturedEvent)
	invalidateLocked(ec.c, err)
	return err
}

// CheckUnsafe is called before a potentially unsafe call (one that is not
// queued on a stream, so a capture cannot see it: cudaMalloc, cudaFree,
// page-locked host memory, memory pool settings) by thread, whose capture
// interaction mode (cudaThreadExchangeStreamCaptureMode) is mode. As CUDA
// documents the modes: the call is prohibited unless mode is relaxed, if
// thread began a capture in progress that is not relaxed, or, in global
// mode, if another thread began a global capture. A prohibited call fails
// with cudaErrorStreamCaptureUnsupported and invalidates those captures.
func (s *Shim) CheckUnsafe(op string, thread uint64, mode int) error {
	if s.graphs.active.Load() == 0 || mode == CaptureModeRelaxed {
		return nil
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	var err error
	seen := map[*capture]bool{}
	for _, sc := range g.streams {
		c := sc.c
		if seen[c] {
			continue
		}
		seen[c] = true
		own := c.thread == thread && c.mode != CaptureModeRelaxed
		other := c.thread != thread && c.mode == CaptureModeGlobal && mode == CaptureModeGlobal
		if !own && !other {
			continue
		}
		if err == nil {
			err = fmt.Errorf("core: %s is not permitted during capture %d (mode %d, this thread's mode %d): %w",
				op, c.id, c.mode, mode, cudaerr.StreamCaptureUnsupported)
		}
		invalidateLocked(c, err)
	}
	return err
}

// BeginCapture puts stream h of dev in capture mode (cudaStreamBeginCapture)
// for thread, in mode. With into nonzero (cudaStreamBeginCaptureToGraph)
// the work is captured into that existing graph, after deps (node handles
// of it); else into a new graph.
func (s *Shim) BeginCapture(dev int, h uint64, mode int, thread, into uint64, deps []uint64) error {
	if _, err := s.device(dev); err != nil {
		return err
	}
	if h == 0 {
		return fmt.Errorf("core: the legacy stream cannot be captured: %w", cudaerr.StreamCaptureUnsupported)
	}
	if mode < CaptureModeGlobal || mode > CaptureModeRelaxed {
		return fmt.Errorf("core: capture mode %d: %w", mode, cudaerr.InvalidValue)
	}
	sdev, blocking, err := s.streamEntryOf(h)
	if err != nil {
		return err
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	g.initLocked()
	if g.streams[h] != nil {
		return fmt.Errorf("core: stream %#x is already capturing: %w", h, cudaerr.IllegalState)
	}
	var gr *graph
	var start []*node
	if into != 0 {
		gr = g.graphs[into]
		if gr == nil {
			return fmt.Errorf("core: graph handle %#x: %w", into, cudaerr.InvalidValue)
		}
		if gr.capture != nil {
			return fmt.Errorf("core: graph %#x is being captured into already: %w", into, cudaerr.IllegalState)
		}
		if start, err = g.nodesOfLocked(gr, deps); err != nil {
			return err
		}
	} else {
		gr = &graph{handle: g.handleLocked()}
		g.graphs[gr.handle] = gr
	}
	g.captures++
	c := &capture{id: g.captures, g: gr, origin: h, mode: mode, thread: thread, streams: []uint64{h}}
	gr.capture = c
	g.streams[h] = &streamCapture{c: c, dev: sdev, blocking: blocking, deps: start}
	g.active.Add(1)
	return nil
}

// EndCapture ends the capture begun on stream h (cudaStreamEndCapture) by
// thread and returns its graph. Every stream that joined the capture
// leaves capture mode. An invalidated capture, or one with a forked
// stream whose work was not joined back into h, gives no graph and an
// error.
func (s *Shim) EndCapture(h, thread uint64) (uint64, error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	sc := g.streams[h]
	if sc == nil {
		return 0, fmt.Errorf("core: stream %#x is not capturing: %w", h, cudaerr.IllegalState)
	}
	c := sc.c
	if c.origin != h {
		err := fmt.Errorf("core: capture %d began on stream %#x, not %#x: %w", c.id, c.origin, h, cudaerr.StreamCaptureUnmatched)
		invalidateLocked(c, err)
		return 0, err
	}
	if c.mode != CaptureModeRelaxed && c.thread != thread {
		return 0, fmt.Errorf("core: capture %d (mode %d) must end on the thread that began it: %w",
			c.id, c.mode, cudaerr.StreamCaptureWrongThread)
	}
	// Streams whose work is not among the origin's dependencies did not
	// join back.
	joined := ancestors(sc.deps)
	var unjoined uint64
	for _, o := range c.streams {
		if o == h {
			continue
		}
		for _, n := range g.streams[o].deps {
			if !joined[n] {
				unjoined = o
			}
		}
	}
	g.endLocked(c)
	switch {
	case c.err != nil:
		g.dropCapturedGraphLocked(c)
		return 0, fmt.Errorf("core: capture %d: %w", c.id, errCaptureInvalidated(c))
	case unjoined != 0:
		g.dropCapturedGraphLocked(c)
		return 0, fmt.Errorf("core: capture %d: stream %#x forked from it and did not join back into stream %#x: %w",
			c.id, unjoined, h, cudaerr.StreamCaptureUnjoined)
	}
	return c.g.handle, nil
}

// endLocked takes c's streams out of capture mode and forgets its events.
func (g *graphState) endLocked(c *capture) {
	for _, o := range c.streams {
		delete(g.streams, o)
	}
	for _, e := range c.events {
		if ec := g.events[e]; ec != nil && ec.c == c {
			delete(g.events, e)
		}
	}
	c.g.capture = nil
	g.active.Add(-1)
}

// dropCapturedGraphLocked destroys the graph of a failed capture, unless
// the capture was into a graph of the application's (which keeps the nodes
// captured so far, as CUDA leaves it).
func (g *graphState) dropCapturedGraphLocked(c *capture) {
	if c.g.owned {
		return
	}
	g.destroyGraphLocked(c.g)
}

// ancestors returns the nodes in deps and every node they depend on.
func ancestors(deps []*node) map[*node]bool {
	seen := make(map[*node]bool)
	stack := slices.Clone(deps)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[n] {
			continue
		}
		seen[n] = true
		stack = append(stack, n.deps...)
	}
	return seen
}

// CaptureInfo is what cudaStreamGetCaptureInfo reports of a stream.
type CaptureInfo struct {
	Status int      // a CaptureStatus value
	ID     uint64   // the capture's id, unique in the process (Status != None)
	Graph  uint64   // the graph being captured into (Status Active)
	Deps   []uint64 // the nodes the stream's next node will depend on (Status Active)
}

// CaptureInfo reports stream h's capture status (cudaStreamIsCapturing,
// cudaStreamGetCaptureInfo); h 0 is dev's legacy stream, which never
// captures, and cannot be asked while a blocking stream of dev captures.
// Deps is appended to buf.
func (s *Shim) CaptureInfo(dev int, h uint64, buf []uint64) (CaptureInfo, error) {
	if s.graphs.active.Load() == 0 {
		if h != 0 {
			if _, _, err := s.streamEntryOf(h); err != nil {
				return CaptureInfo{}, err
			}
		}
		return CaptureInfo{Deps: buf[:0]}, nil
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	if h == 0 {
		// Asking does not invalidate the blocking stream's capture.
		return CaptureInfo{Deps: buf[:0]}, g.implicitLocked("capture status", dev, false)
	}
	sc := g.streams[h]
	if sc == nil {
		if _, ok := s.streams.get(h); !ok {
			return CaptureInfo{}, fmt.Errorf("core: stream handle %#x: %w", h, cudaerr.InvalidResourceHandle)
		}
		return CaptureInfo{Deps: buf[:0]}, nil
	}
	info := CaptureInfo{Status: CaptureStatusActive, ID: sc.c.id, Deps: buf[:0]}
	if sc.c.err != nil {
		info.Status = CaptureStatusInvalidated
		return info, nil
	}
	info.Graph = sc.c.g.handle
	for _, n := range sc.deps {
		info.Deps = append(info.Deps, n.handle)
	}
	return info, nil
}

// UpdateCaptureDependencies replaces (replace) or adds to the dependency
// set of capturing stream h (cudaStreamUpdateCaptureDependencies); deps
// are nodes of the capture's graph.
func (s *Shim) UpdateCaptureDependencies(h uint64, deps []uint64, flags uint32) error {
	if flags > CaptureDependenciesReplace {
		return fmt.Errorf("core: capture dependency flags %#x: %w", flags, cudaerr.InvalidValue)
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	sc := g.streams[h]
	if sc == nil {
		return fmt.Errorf("core: stream %#x is not capturing: %w", h, cudaerr.IllegalState)
	}
	if sc.c.err != nil {
		return errCaptureInvalidated(sc.c)
	}
	ns, err := g.nodesOfLocked(sc.c.g, deps)
	if err != nil {
		return err
	}
	if flags == CaptureDependenciesReplace {
		sc.deps = ns
		return nil
	}
	sc.deps = unionNodes(sc.deps, ns)
	return nil
}

// unionNodes returns a with the nodes of b it lacks appended (a new
// slice).
func unionNodes(a, b []*node) []*node {
	out := slices.Clone(a)
	for _, n := range b {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// captureEventRecord handles cudaEventRecord of event e on stream h (of
// dev) while captures are in progress: in a capturing stream the event
// takes the stream's dependency set (or, with EventRecordExternal, a
// record node is captured); elsewhere a new record replaces a captured
// one. It reports true when the record was captured.
func (s *Shim) captureEventRecord(e uint64, dev int, h uint64, flags uint32) (bool, error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	sc, err := s.captureTargetLocked("cudaEventRecord", dev, h)
	if err != nil {
		return false, err
	}
	if sc == nil {
		delete(g.events, e)
		return false, nil
	}
	if flags&EventRecordExternal != 0 {
		n := g.addNodeLocked(sc.c.g, nodeOp{kind: NodeEventRecord, event: e}, sc.deps)
		sc.deps = []*node{n}
		return true, nil
	}
	g.events[e] = &eventCapture{c: sc.c, deps: slices.Clone(sc.deps)}
	sc.c.events = append(sc.c.events, e)
	return true, nil
}

// captureStreamWait handles cudaStreamWaitEvent(h, e) while captures are
// in progress; it reports true when the wait was captured (stream h
// joined e's capture, merged e's dependencies, or captured a wait node).
func (s *Shim) captureStreamWait(dev int, h, e uint64, flags uint32) (bool, error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	ec := g.events[e]
	sc := g.streams[h]
	switch {
	case ec == nil && sc == nil:
		if h == 0 {
			return false, g.implicitLocked("cudaStreamWaitEvent", dev, true)
		}
		return false, nil
	case ec == nil:
		if sc.c.err != nil {
			return false, errCaptureInvalidated(sc.c)
		}
		if flags&EventWaitExternal == 0 {
			err := fmt.Errorf("core: capturing stream %#x waits for event %#x, recorded outside the capture (cudaEventWaitExternal not given): %w",
				h, e, cudaerr.StreamCaptureIsolation)
			invalidateLocked(sc.c, err)
			return false, err
		}
		n := g.addNodeLocked(sc.c.g, nodeOp{kind: NodeWaitEvent, event: e}, sc.deps)
		sc.deps = []*node{n}
		return true, nil
	case ec.c.err != nil:
		return false, errCaptureInvalidated(ec.c)
	case sc == nil:
		if h == 0 {
			err := fmt.Errorf("core: the legacy stream cannot join capture %d: %w", ec.c.id, cudaerr.StreamCaptureImplicit)
			invalidateLocked(ec.c, err)
			return false, err
		}
		sdev, blocking, err := s.streamEntryOf(h)
		if err != nil {
			return false, err
		}
		g.streams[h] = &streamCapture{c: ec.c, dev: sdev, blocking: blocking, deps: slices.Clone(ec.deps)}
		ec.c.streams = append(ec.c.streams, h)
		return true, nil
	case sc.c != ec.c:
		err := fmt.Errorf("core: stream %#x of capture %d waits for event %#x of capture %d: %w",
			h, sc.c.id, e, ec.c.id, cudaerr.StreamCaptureMerge)
		invalidateLocked(sc.c, err)
		invalidateLocked(ec.c, err)
		return false, err
	default:
		if sc.c.err != nil {
			return false, errCaptureInvalidated(sc.c)
		}
		sc.deps = unionNodes(sc.deps, ec.deps)
		return true, nil
	}
}

// streamDestroyed takes stream h out of any capture: the capture it began
// ends with no graph; a capture it joined is invalidated.
func (s *Shim) streamDestroyed(h uint64) {
	if s.graphs.active.Load() == 0 {
		return
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	sc := g.streams[h]
	if sc == nil {
		return
	}
	c := sc.c
	if c.origin == h {
		g.endLocked(c)
		g.dropCapturedGraphLocked(c)
		return
	}
	delete(g.streams, h)
	c.streams = slices.DeleteFunc(c.streams, func(o uint64) bool { return o == h })
	invalidateLocked(c, fmt.Errorf("core: stream %#x was destroyed during the capture: %w", h, cudaerr.StreamCaptureInvalidated))
}

// captureKernel makes a kernel launch on stream h of dev a node when h is
// capturing; the arguments (args: one pointer per parameter, or packed:
// the parameters laid out) are copied now, and the node keeps the launch's
// flags (a cooperative launch replays as one).
func (s *Shim) captureKernel(dev int, h uint64, fn functionRef, name string, params []Param, size int,
	grid, block [3]uint32, shared uint64, flags LaunchFlags, args unsafe.Pointer, packed []byte) (bool, error) {
	g := &s.graphs
	g.mu.Lock()
	sc, err := s.captureTargetLocked("kernel launch", dev, h)
	g.mu.Unlock()
	if err != nil || sc == nil {
		return false, err
	}
	var o nodeOp
	if args == nil && packed != nil {
		o, err = packedKernelOp(dev, fn, name, nil, 0, grid, block, shared, nil)
		o.args = slices.Clone(packed)
	} else {
		o, err = packedKernelOp(dev, fn, name, params, size, grid, block, shared, args)
	}
	if err != nil {
		return true, err
	}
	o.coop = flags&LaunchCooperative != 0
	// The stream may have left the capture meanwhile (another thread ended
	// it); then the launch runs as usual.
	return s.captureOp("kernel launch", dev, h, o)
}

// HostFunc handles cudaLaunchHostFunc on stream h of dev while captures
// may be in progress: on a capturing stream the call becomes a host node
// (captured true). Otherwise the caller runs fn itself once the stream's
// earlier work is done.
func (s *Shim) HostFunc(dev int, h uint64, fn, arg unsafe.Pointer) (captured bool, err error) {
	if fn == nil {
		return false, fmt.Errorf("core: host function is nil: %w", cudaerr.InvalidValue)
	}
	if s.graphs.active.Load() == 0 {
		return false, nil
	}
	return s.captureOp("cudaLaunchHostFunc", dev, h, nodeOp{kind: NodeHost, hostFn: fn, hostArg: arg})
}

// RefuseCaptured fails op (an asynchronous call xgpu does not capture:
// cudaStreamAddCallback, cudaMemcpyPeerAsync, ...) on capturing stream h
// of dev with cudaErrorStreamCaptureUnsupported, invalidating the capture.
func (s *Shim) RefuseCaptured(op string, dev int, h uint64) error {
	return s.refuseCaptured(op, dev, h)
}

// eventDestroyed forgets a captured record of event e.
func (s *Shim) eventDestroyed(e uint64) {
	if s.graphs.active.Load() == 0 {
		return
	}
	s.graphs.mu.Lock()
	delete(s.graphs.events, e)
	s.graphs.mu.Unlock()
}

// Synchronize is cudaDeviceSynchronize: it waits for all of dev's work. It
// cannot while a stream of dev captures (the call fails and invalidates
// the capture). Afterwards the memory pools of dev release what they hold
// beyond their release thresholds.
func (s *Shim) Synchronize(dev int) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	if err := s.checkDeviceSync("cudaDeviceSynchronize", dev); err != nil {
		return err
	}
	if err := c.DeviceSynchronize(dev); err != nil {
		return err
	}
	s.poolsSynchronized(c, runtime.LegacyStream(dev), true)
	return nil
}
