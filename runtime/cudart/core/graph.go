package core

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/runtime"
)

// CUDA graphs. A graph is a client-side object: a DAG of nodes, each an
// operation recorded with its parameters (a kernel launch with its packed
// arguments, a copy, a memset, a host function, an event record or wait,
// or nothing). Instantiating a graph fixes a topological order of copies of
// its nodes; launching the executable graph queues them, in that order, on
// one stream, which respects every dependency. Host memory named by a copy
// node is read or written when the launch reaches the node, as CUDA does.

// Node types: the values of cudaGraphNodeType.
const (
	NodeKernel      = 0x00
	NodeMemcpy      = 0x01
	NodeMemset      = 0x02
	NodeHost        = 0x03
	NodeGraph       = 0x04
	NodeEmpty       = 0x05
	NodeWaitEvent   = 0x06
	NodeEventRecord = 0x07
)

// Instantiation flags (cudaGraphInstantiateFlags) the shim accepts: each
// is a hint or a promise that needs nothing of it (no memory nodes, no
// device launch).
const (
	InstantiateAutoFreeOnLaunch = 0x1
	InstantiateUpload           = 0x2
	InstantiateDeviceLaunch     = 0x4
	InstantiateUseNodePriority  = 0x8
	instantiateFlagsKnown       = InstantiateAutoFreeOnLaunch | InstantiateUpload | InstantiateDeviceLaunch | InstantiateUseNodePriority
)

// nodeOp is a recorded operation. Its fields never change once the node
// is made (a new parameter set replaces the whole nodeOp), so executable
// graphs share them with the graph they came from.
type nodeOp struct {
	kind int // a Node* value
	dev  int // the device a kernel, copy or memset runs on

	// Kernels.
	fn          functionRef
	name        string
	grid, block [3]uint32
	shared      uint32
	args        []byte // packed at capture or add time
	coop        bool   // a cooperative launch (captured from one)

	// Copies: dst and src are device addresses or the application's host
	// memory; kind is the direction found from them.
	dst, src unsafe.Pointer
	n        uint64
	copyKind int

	// Memsets: width elements of elem bytes per row, height rows pitch
	// bytes apart.
	setDst        uint64
	value         uint32
	elem          uint32
	width, height uint64
	pitch         uint64

	// Host functions: the application's function and its argument.
	hostFn, hostArg unsafe.Pointer

	// Event records and waits.
	event uint64
}

// node is a node of a graph.
type node struct {
	handle uint64
	g      *graph
	op     nodeOp
	deps   []*node // in the order they were added
	outs   []*node
}

// graph is a graph the application created or a capture built.
type graph struct {
	handle  uint64
	nodes   []*node  // in creation order
	capture *capture // the capture building it, if any
	owned   bool     // created by cudaGraphCreate (a capture into it does not own it)
}

// graphExec is an executable graph. Launches read order without a lock;
// setting a node's parameters replaces it.
type graphExec struct {
	flags uint64
	order atomic.Pointer[[]execNode]
}

type execNode struct {
	from uint64 // the handle of the graph node it was instantiated from
	op   nodeOp
}

// SetHostCaller sets how host function nodes are called: fn is the
// application's function pointer, arg its argument. The C library sets it
// at load; before that, a host node fails with cudaErrorNotSupported.
func (s *Shim) SetHostCaller(call func(fn, arg unsafe.Pointer)) { s.hostCall.Store(&call) }

func (s *Shim) callHost(fn, arg unsafe.Pointer) error {
	call := s.hostCall.Load()
	if call == nil {
		return fmt.Errorf("core: no way to call host functions: %w", cudaerr.NotSupported)
	}
	(*call)(fn, arg)
	return nil
}

// addNodeLocked adds a node running o after deps to gr.
func (g *graphState) addNodeLocked(gr *graph, o nodeOp, deps []*node) *node {
	n := &node{handle: g.handleLocked(), g: gr, op: o, deps: slices.Clone(deps)}
	for _, d := range n.deps {
		d.outs = append(d.outs, n)
	}
	gr.nodes = append(gr.nodes, n)
	g.nodes[n.handle] = n
	return n
}

// nodesOfLocked resolves node handles of gr; a handle twice, or a node of
// another graph, is an error.
func (g *graphState) nodesOfLocked(gr *graph, hs []uint64) ([]*node, error) {
	out := make([]*node, 0, len(hs))
	for _, h := range hs {
		n := g.nodes[h]
		if n == nil || n.g != gr {
			return nil, fmt.Errorf("core: node handle %#x is not a node of graph %#x: %w", h, gr.handle, cudaerr.InvalidValue)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("core: node %#x listed twice as a dependency: %w", h, cudaerr.InvalidValue)
		}
		out = append(out, n)
	}
	return out, nil
}

func (g *graphState) graphLocked(h uint64) (*graph, error) {
	gr := g.graphs[h]
	if gr == nil {
		return nil, fmt.Errorf("core: graph handle %#x: %w", h, cudaerr.InvalidValue)
	}
	return gr, nil
}

func (g *graphState) nodeLocked(h uint64) (*node, error) {
	n := g.nodes[h]
	if n == nil {
		return nil, fmt.Errorf("core: node handle %#x: %w", h, cudaerr.InvalidValue)
	}
	return n, nil
}

// destroyGraphLocked forgets gr and its nodes.
func (g *graphState) destroyGraphLocked(gr *graph) {
	for _, n := range gr.nodes {
		delete(g.nodes, n.handle)
	}
	delete(g.graphs, gr.handle)
}

// GraphCreate creates an empty graph (cudaGraphCreate; flags must be 0).
func (s *Shim) GraphCreate(flags uint32) (uint64, error) {
	if flags != 0 {
		return 0, fmt.Errorf("core: graph flags %#x: %w", flags, cudaerr.InvalidValue)
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	g.initLocked()
	gr := &graph{handle: g.handleLocked(), owned: true}
	g.graphs[gr.handle] = gr
	return gr.handle, nil
}

// GraphDestroy destroys graph h and its nodes; executable graphs made from
// it stay valid. A graph a capture is building cannot be destroyed.
func (s *Shim) GraphDestroy(h uint64) error {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, err := g.graphLocked(h)
	if err != nil {
		return err
	}
	if gr.capture != nil {
		return fmt.Errorf("core: graph %#x is being captured into: %w", h, cudaerr.IllegalState)
	}
	g.destroyGraphLocked(gr)
	return nil
}

// addNode adds o to graph h after the nodes deps.
func (s *Shim) addNode(h uint64, deps []uint64, o nodeOp) (uint64, error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, err := g.graphLocked(h)
	if err != nil {
		return 0, err
	}
	if gr.capture != nil {
		return 0, fmt.Errorf("core: graph %#x is being captured into: %w", h, cudaerr.IllegalState)
	}
	ds, err := g.nodesOfLocked(gr, deps)
	if err != nil {
		return 0, err
	}
	return g.addNodeLocked(gr, o, ds).handle, nil
}

// GraphAddEmpty adds an empty node (cudaGraphAddEmptyNode).
func (s *Shim) GraphAddEmpty(h uint64, deps []uint64) (uint64, error) {
	return s.addNode(h, deps, nodeOp{kind: NodeEmpty})
}

// GraphAddHost adds a node that calls fn(arg) on the host
// (cudaGraphAddHostNode).
func (s *Shim) GraphAddHost(h uint64, deps []uint64, fn, arg unsafe.Pointer) (uint64, error) {
	if fn == nil {
		return 0, fmt.Errorf("core: host node without a function: %w", cudaerr.InvalidValue)
	}
	return s.addNode(h, deps, nodeOp{kind: NodeHost, hostFn: fn, hostArg: arg})
}

// GraphAddEvent adds an event record (NodeEventRecord) or wait
// (NodeWaitEvent) node for event e.
func (s *Shim) GraphAddEvent(h uint64, deps []uint64, kind int, e uint64) (uint64, error) {
	if kind != NodeEventRecord && kind != NodeWaitEvent {
		return 0, fmt.Errorf("core: event node type %d: %w", kind, cudaerr.InvalidValue)
	}
	if _, err := s.event(e); err != nil {
		return 0, err
	}
	return s.addNode(h, deps, nodeOp{kind: kind, event: e})
}

// copyOp checks a copy of n bytes from src to dst in direction kind and
// returns its node operation (dev: the calling thread's device).
func (s *Shim) copyOp(dst, src unsafe.Pointer, n uint64, kind, dev int) (nodeOp, error) {
	if _, err := s.device(dev); err != nil {
		return nodeOp{}, err
	}
	actual, err := s.copyKind(dst, src, kind)
	if err != nil {
		return nodeOp{}, err
	}
	return nodeOp{kind: NodeMemcpy, dev: dev, dst: dst, src: src, n: n, copyKind: actual}, nil
}

// GraphAddMemcpy adds a copy of n bytes (cudaGraphAddMemcpyNode1D). Host
// memory is read or written when a launch reaches the node.
func (s *Shim) GraphAddMemcpy(h uint64, deps []uint64, dst, src unsafe.Pointer, n uint64, kind, dev int) (uint64, error) {
	if n == 0 || dst == nil || src == nil {
		return 0, fmt.Errorf("core: memcpy node of %d bytes from %p to %p: %w", n, src, dst, cudaerr.InvalidValue)
	}
	o, err := s.copyOp(dst, src, n, kind, dev)
	if err != nil {
		return 0, err
	}
	return s.addNode(h, deps, o)
}

// MemsetParams is cudaMemsetParams: Height rows of Width elements of
// ElementSize (1, 2 or 4) bytes, Pitch bytes apart, set to Value.
type MemsetParams struct {
	Dst           uint64
	Pitch         uint64
	Value         uint32
	ElementSize   uint32
	Width, Height uint64
}

// GraphAddMemset adds a memset node (cudaGraphAddMemsetNode).
func (s *Shim) GraphAddMemset(h uint64, deps []uint64, p MemsetParams) (uint64, error) {
	o, err := s.memsetOp(p)
	if err != nil {
		return 0, err
	}
	return s.addNode(h, deps, o)
}

func (s *Shim) memsetOp(p MemsetParams) (nodeOp, error) {
	c, err := s.Client()
	if err != nil {
		return nodeOp{}, err
	}
	bad := p.Dst == 0 || p.Width == 0 || p.Height == 0 ||
		(p.ElementSize != 1 && p.ElementSize != 2 && p.ElementSize != 4) ||
		(p.Height > 1 && p.Pitch < p.Width*uint64(p.ElementSize)) ||
		(p.ElementSize < 4 && p.Value>>(8*p.ElementSize) != 0)
	if bad {
		return nodeOp{}, fmt.Errorf("core: memset node %+v: %w", p, cudaerr.InvalidValue)
	}
	dev, ok := c.Map().DeviceOf(p.Dst)
	if !ok {
		return nodeOp{}, fmt.Errorf("core: memset node of %#x, not device memory: %w", p.Dst, cudaerr.InvalidValue)
	}
	pitch := p.Pitch
	if p.Height == 1 {
		pitch = p.Width * uint64(p.ElementSize)
	}
	return nodeOp{kind: NodeMemset, dev: dev, setDst: p.Dst, value: p.Value, elem: p.ElementSize,
		width: p.Width, height: p.Height, pitch: pitch}, nil
}

// kernelOp resolves kernel k (a registered kernel's handle) on dev and
// packs its arguments (args: one pointer per parameter).
func (s *Shim) kernelOp(k uint64, dev int, grid, block [3]uint32, shared uint64, args unsafe.Pointer) (nodeOp, error) {
	c, err := s.kernelDevice(dev)
	if err != nil {
		return nodeOp{}, err
	}
	kn, err := s.kernelByHandle(k)
	if err != nil {
		return nodeOp{}, err
	}
	kd, err := s.onDevice(c, kn, dev)
	if err != nil {
		return nodeOp{}, err
	}
	return packedKernelOp(dev, kd.fn, kn.name, kd.params, kd.size, grid, block, shared, args)
}

// packedKernelOp checks a launch configuration and copies the arguments.
func packedKernelOp(dev int, fn functionRef, name string, params []Param, size int, grid, block [3]uint32, shared uint64, args unsafe.Pointer) (nodeOp, error) {
	if shared > 1<<32-1 {
		return nodeOp{}, fmt.Errorf("core: %d bytes of dynamic shared memory: %w", shared, cudaerr.InvalidValue)
	}
	for i := range 3 {
		if grid[i] == 0 || block[i] == 0 {
			return nodeOp{}, fmt.Errorf("core: kernel %s with grid %v and block %v: %w", name, grid, block, cudaerr.InvalidConfiguration)
		}
	}
	if len(params) > 0 && args == nil {
		return nodeOp{}, fmt.Errorf("core: kernel %s: no arguments for %d parameters: %w", name, len(params), cudaerr.InvalidValue)
	}
	buf := make([]byte, size)
	ptrs := unsafe.Slice((*unsafe.Pointer)(args), len(params))
	for i, p := range params {
		if ptrs[i] == nil {
			return nodeOp{}, fmt.Errorf("core: kernel %s: argument %d is a nil pointer: %w", name, i, cudaerr.InvalidValue)
		}
		copy(buf[p.Offset:p.Offset+p.Size], unsafe.Slice((*byte)(ptrs[i]), p.Size))
	}
	return nodeOp{kind: NodeKernel, dev: dev, fn: fn, name: name, grid: grid, block: block, shared: uint32(shared), args: buf}, nil
}

// GraphAddKernel adds a launch of kernel k on dev (cudaGraphAddKernelNode);
// the arguments are copied now.
func (s *Shim) GraphAddKernel(h uint64, deps []uint64, k uint64, dev int, grid, block [3]uint32, shared uint64, args unsafe.Pointer) (uint64, error) {
	o, err := s.kernelOp(k, dev, grid, block, shared, args)
	if err != nil {
		return 0, err
	}
	return s.addNode(h, deps, o)
}

// GraphAddDependencies adds the edges from[i] -> to[i]
// (cudaGraphAddDependencies). An edge that exists, a node of another
// graph, or an edge that would close a cycle is an error, and then no edge
// is added.
func (s *Shim) GraphAddDependencies(h uint64, from, to []uint64) error {
	if len(from) != len(to) {
		return fmt.Errorf("core: %d sources for %d destinations: %w", len(from), len(to), cudaerr.InvalidValue)
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, err := g.graphLocked(h)
	if err != nil {
		return err
	}
	type edge struct{ a, b *node }
	edges := make([]edge, len(from))
	for i := range from {
		a, err := g.nodeLocked(from[i])
		if err != nil {
			return err
		}
		b, err := g.nodeLocked(to[i])
		if err != nil {
			return err
		}
		if a.g != gr || b.g != gr || a == b || slices.Contains(b.deps, a) ||
			slices.Contains(edges, edge{a, b}) {
			return fmt.Errorf("core: edge %#x -> %#x in graph %#x: %w", from[i], to[i], h, cudaerr.InvalidValue)
		}
		edges[i] = edge{a, b}
	}
	for _, e := range edges {
		e.b.deps = append(e.b.deps, e.a)
		e.a.outs = append(e.a.outs, e.b)
	}
	if _, err := topoOrder(gr.nodes); err != nil {
		for _, e := range slices.Backward(edges) {
			e.b.deps = e.b.deps[:len(e.b.deps)-1]
			e.a.outs = e.a.outs[:len(e.a.outs)-1]
		}
		return fmt.Errorf("core: the edges would make a cycle in graph %#x: %w", h, cudaerr.InvalidValue)
	}
	return nil
}

// GraphRemoveDependencies removes the edges from[i] -> to[i]; an edge that
// does not exist is an error, and then none is removed.
func (s *Shim) GraphRemoveDependencies(h uint64, from, to []uint64) error {
	if len(from) != len(to) {
		return fmt.Errorf("core: %d sources for %d destinations: %w", len(from), len(to), cudaerr.InvalidValue)
	}
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, err := g.graphLocked(h)
	if err != nil {
		return err
	}
	for i := range from {
		a, b := g.nodes[from[i]], g.nodes[to[i]]
		if a == nil || b == nil || a.g != gr || b.g != gr || !slices.Contains(b.deps, a) {
			return fmt.Errorf("core: no edge %#x -> %#x in graph %#x: %w", from[i], to[i], h, cudaerr.InvalidValue)
		}
	}
	for i := range from {
		a, b := g.nodes[from[i]], g.nodes[to[i]]
		b.deps = slices.DeleteFunc(b.deps, func(n *node) bool { return n == a })
		a.outs = slices.DeleteFunc(a.outs, func(n *node) bool { return n == b })
	}
	return nil
}

// GraphDestroyNode removes node h and its edges from its graph.
func (s *Shim) GraphDestroyNode(h uint64) error {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	n, err := g.nodeLocked(h)
	if err != nil {
		return err
	}
	if n.g.capture != nil {
		return fmt.Errorf("core: graph %#x is being captured into: %w", n.g.handle, cudaerr.IllegalState)
	}
	for _, d := range n.deps {
		d.outs = slices.DeleteFunc(d.outs, func(o *node) bool { return o == n })
	}
	for _, o := range n.outs {
		o.deps = slices.DeleteFunc(o.deps, func(d *node) bool { return d == n })
	}
	n.g.nodes = slices.DeleteFunc(n.g.nodes, func(o *node) bool { return o == n })
	delete(g.nodes, h)
	return nil
}

// GraphNodes returns graph h's nodes in creation order (cudaGraphGetNodes),
// or only those with no dependencies (roots, cudaGraphGetRootNodes).
func (s *Shim) GraphNodes(h uint64, roots bool) ([]uint64, error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, err := g.graphLocked(h)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, 0, len(gr.nodes))
	for _, n := range gr.nodes {
		if !roots || len(n.deps) == 0 {
			out = append(out, n.handle)
		}
	}
	return out, nil
}

// GraphEdges returns graph h's edges from[i] -> to[i] (cudaGraphGetEdges).
func (s *Shim) GraphEdges(h uint64) (from, to []uint64, err error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	gr, err := g.graphLocked(h)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range gr.nodes {
		for _, d := range n.deps {
			from = append(from, d.handle)
			to = append(to, n.handle)
		}
	}
	return from, to, nil
}

// NodeDependencies returns the nodes node h depends on, or, with
// dependents set, the nodes that depend on it.
func (s *Shim) NodeDependencies(h uint64, dependents bool) ([]uint64, error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	n, err := g.nodeLocked(h)
	if err != nil {
		return nil, err
	}
	list := n.deps
	if dependents {
		list = n.outs
	}
	out := make([]uint64, len(list))
	for i, d := range list {
		out[i] = d.handle
	}
	return out, nil
}

// NodeType returns node h's type (a Node* value).
func (s *Shim) NodeType(h uint64) (int, error) {
	g := &s.graphs
	g.mu.Lock()
	defer g.mu.Unlock()
	n, err := g.nodeLocked(h)
	if err != nil {
		return 0, err
	}
	return n.op.kind, nil
}

// topoOrder returns nodes in an order where every node comes after its
// dependencies; among nodes free to go, creation order decides, so that a
// graph captured from one stream replays in the order it was captured. A
// cycle is an error.
func topoOrder(nodes []*node) ([]*node, error) {
	pos := make(map[*node]int, len(nodes))
	for i, n := range nodes {
		pos[n] = i
	}
	waiting := make([]int, len(nodes))  // dependencies not yet placed
	ready := make([]int, 0, len(nodes)) // positions, kept sorted
	for i, n := range nodes {
		waiting[i] = len(n.deps)
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]*node, 0, len(nodes))
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		out = append(out, nodes[i])
		for _, o := range nodes[i].outs {
			j, ok := pos[o]
			if !ok {
				continue
			}
			if waiting[j]--; waiting[j] == 0 {
				k, _ := slices.BinarySearch(ready, j)
				ready = slices.Insert(ready, k, j)
			}
		}
	}
	if len(out) != len(nodes) {
		return nil, errors.New("core: the graph has a cycle")
	}
	return out, nil
}

// GraphInstantiate makes an executable graph of graph h
// (cudaGraphInstantiateWithFlags).
func (s *Shim) GraphInstantiate(h, flags uint64) (uint64, error) {
	if flags&^instantiateFlagsKnown != 0 {
		return 0, fmt.Errorf("core: instantiate flags %#x: %w", flags, cudaerr.InvalidValue)
	}
	g := &s.graphs
	g.mu.Lock()
	gr, err := g.graphLocked(h)
	if err == nil && gr.capture != nil {
		err = fmt.Errorf("core: graph %#x is being captured into: %w", h, cudaerr.IllegalState)
	}
	var order []*node
	if err == nil {
		if order, err = topoOrder(gr.nodes); err != nil {
			err = fmt.Errorf("%w: %w", err, cudaerr.InvalidValue)
		}
	}
	var nodes []execNode
	if err == nil {
		nodes = make([]execNode, len(order))
		for i, n := range order {
			nodes[i] = execNode{from: n.handle, op: n.op}
		}
	}
	g.mu.Unlock()
	if err != nil {
		return 0, err
	}
	x := &graphExec{flags: flags}
	x.order.Store(&nodes)
	return g.execs.add(x), nil
}

// GraphExecDestroy destroys executable graph h; launches already queued
// still run.
func (s *Shim) GraphExecDestroy(h uint64) error {
	if _, ok := s.graphs.execs.remove(h); !ok {
		return fmt.Errorf("core: executable graph handle %#x: %w", h, cudaerr.InvalidValue)
	}
	return nil
}

// GraphExecFlags returns the flags executable graph h was instantiated
// with.
func (s *Shim) GraphExecFlags(h uint64) (uint64, error) {
	x, ok := s.graphs.execs.get(h)
	if !ok {
		return 0, fmt.Errorf("core: executable graph handle %#x: %w", h, cudaerr.InvalidValue)
	}
	return x.flags, nil
}

// GraphExecKernelParams sets the parameters of kernel node h of executable
// graph x (cudaGraphExecKernelNodeSetParams); later launches use them.
func (s *Shim) GraphExecKernelParams(x, h uint64, k uint64, dev int, grid, block [3]uint32, shared uint64, args unsafe.Pointer) error {
	ex, ok := s.graphs.execs.get(x)
	if !ok {
		return fmt.Errorf("core: executable graph handle %#x: %w", x, cudaerr.InvalidValue)
	}
	o, err := s.kernelOp(k, dev, grid, block, shared, args)
	if err != nil {
		return err
	}
	s.graphs.mu.Lock() // serializes updates of one executable graph
	defer s.graphs.mu.Unlock()
	old := *ex.order.Load()
	i := slices.IndexFunc(old, func(n execNode) bool { return n.from == h })
	if i < 0 || old[i].op.kind != NodeKernel {
		return fmt.Errorf("core: node %#x is not a kernel node of executable graph %#x: %w", h, x, cudaerr.InvalidValue)
	}
	next := slices.Clone(old)
	o.coop = old[i].op.coop // new parameters, the same node attributes
	next[i].op = o
	ex.order.Store(&next)
	return nil
}

// GraphLaunch queues executable graph x on stream h of dev
// (cudaGraphLaunch): its nodes in their instantiated order.
func (s *Shim) GraphLaunch(x uint64, dev int, h uint64) error {
	c, err := s.device(dev)
	if err != nil {
		return err
	}
	ex, ok := s.graphs.execs.get(x)
	if !ok {
		return fmt.Errorf("core: executable graph handle %#x: %w", x, cudaerr.InvalidValue)
	}
	st, err := s.stream(dev, h)
	if err != nil {
		return err
	}
	if err := s.refuseCaptured("cudaGraphLaunch", dev, h); err != nil {
		return err
	}
	for _, n := range *ex.order.Load() {
		if err := s.runOp(c, &n.op, st); err != nil {
			return fmt.Errorf("core: launch of executable graph %#x, node %#x: %w", x, n.from, err)
		}
	}
	return nil
}

// runOp queues o on st. An operation of another device than st's runs on
// its device's legacy stream, between synchronizations of both, so that
// the order still holds.
func (s *Shim) runOp(c *runtime.Client, o *nodeOp, st runtime.Stream) error {
	switch o.kind {
	case NodeEmpty:
		return nil
	case NodeHost:
		if err := c.StreamSynchronize(st); err != nil {
			return err
		}
		return s.callHost(o.hostFn, o.hostArg)
	case NodeEventRecord, NodeWaitEvent:
		ev, err := s.event(o.event)
		if err != nil {
			return err
		}
		if o.kind == NodeEventRecord {
			return c.EventRecord(ev, st)
		}
		return c.StreamWaitEvent(st, ev)
	}
	if o.kind != NodeMemcpy && o.dev != st.Device() {
		if err := c.StreamSynchronize(st); err != nil {
			return err
		}
		other := runtime.LegacyStream(o.dev)
		if err := s.runDeviceOp(c, o, other); err != nil {
			return err
		}
		return c.StreamSynchronize(other)
	}
	return s.runDeviceOp(c, o, st)
}

func (s *Shim) runDeviceOp(c *runtime.Client, o *nodeOp, st runtime.Stream) error {
	switch o.kind {
	case NodeKernel:
		k, err := s.kernelDevice(o.dev)
		if err != nil {
			return err
		}
		return k.Launch(o.dev, o.fn, o.grid, o.block, o.shared, o.coop, st, o.args)
	case NodeMemcpy:
		return s.copyOn(c, o.dst, o.src, o.n, o.copyKind, st, true)
	case NodeMemset:
		for r := range o.height {
			dst := o.setDst + r*o.pitch
			var err error
			switch o.elem {
			case 1:
				err = c.MemsetAsync(dst, byte(o.value), o.width, st)
			case 2:
				err = c.MemsetD16Async(dst, uint16(o.value), o.width, st)
			default:
				err = c.MemsetD32Async(dst, o.value, o.width, st)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("core: node type %d: %w", o.kind, cudaerr.NotSupported)
}

// GraphDot writes graph h in Graphviz DOT form to path
// (cudaGraphDebugDotPrint): one vertex per node, named by its handle and
// type, with its main parameters, and one edge per dependency.
func (s *Shim) GraphDot(h uint64, path string) error {
	g := &s.graphs
	g.mu.Lock()
	gr, err := g.graphLocked(h)
	var b strings.Builder
	if err == nil {
		fmt.Fprintf(&b, "digraph xgpu_graph_%#x {\n", h)
		for _, n := range gr.nodes {
			fmt.Fprintf(&b, "  n%#x [label=%q];\n", n.handle, nodeLabel(n))
		}
		for _, n := range gr.nodes {
			for _, d := range n.deps {
				fmt.Fprintf(&b, "  n%#x -> n%#x;\n", d.handle, n.handle)
			}
		}
		b.WriteString("}\n")
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("core: graph dot file: %v: %w", err, cudaerr.OperatingSystem)
	}
	return nil
}

func nodeLabel(n *node) string {
	o := &n.op
	switch o.kind {
	case NodeKernel:
		coop := ""
		if o.coop {
			coop = "\ncooperative"
		}
		return fmt.Sprintf("%#x kernel %s\ndevice %d grid %v block %v shared %d%s", n.handle, o.name, o.dev, o.grid, o.block, o.shared, coop)
	case NodeMemcpy:
		return fmt.Sprintf("%#x memcpy %d bytes\n%p -> %p (kind %d)", n.handle, o.n, o.src, o.dst, o.copyKind)
	case NodeMemset:
		return fmt.Sprintf("%#x memset %#x = %#x\n%d x %d elements of %d bytes", n.handle, o.setDst, o.value, o.width, o.height, o.elem)
	case NodeHost:
		return fmt.Sprintf("%#x host function %p", n.handle, o.hostFn)
	case NodeEventRecord:
		return fmt.Sprintf("%#x event record %#x", n.handle, o.event)
	case NodeWaitEvent:
		return fmt.Sprintf("%#x event wait %#x", n.handle, o.event)
	}
	return fmt.Sprintf("%#x empty", n.handle)
}
