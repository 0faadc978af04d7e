package collective

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

type kind int

const (
	kAllReduce kind = iota
	kReduceScatter
	kAllGather
	kBroadcast
	kReduce
	kAllToAll
	kSendRecv
)

var kindNames = [...]string{"allreduce", "reducescatter", "allgather", "broadcast", "reduce", "alltoall", "sendrecv"}

func (k kind) String() string { return kindNames[k] }

// reducing reports whether the operation takes a reduction operator.
func (k kind) reducing() bool { return k == kAllReduce || k == kReduceScatter || k == kReduce }

// opCase is one operation with its arguments.
type opCase struct {
	kind    kind
	dt      DType
	op      Op
	count   int // as the operation takes it: per rank for RS, AG, A2A
	inPlace bool
	root    int
}

func (oc opCase) String() string {
	place := "out"
	if oc.inPlace {
		place = "in"
	}
	s := fmt.Sprintf("%v/%v", oc.kind, oc.dt)
	if oc.kind.reducing() {
		s += "/" + oc.op.String()
	}
	if oc.kind == kBroadcast || oc.kind == kReduce {
		s += fmt.Sprintf("/root%d", oc.root)
	}
	return fmt.Sprintf("%s/n%d/%s", s, oc.count, place)
}

// runCase runs oc on every rank of cl and checks every result against a
// reference computed here, that no byte past a result was written, and
// that out-of-place inputs were left alone.
func runCase(t *testing.T, cl *cluster, oc opCase, seed uint64) {
	t.Helper()
	n := len(cl.comms)
	rng := rand.New(rand.NewPCG(seed, uint64(oc.count)))
	es := oc.dt.Size()
	cb := oc.count * es
	inCount := oc.count
	if oc.kind == kReduceScatter || oc.kind == kAllToAll {
		inCount = n * oc.count
	}
	ins := make([][]byte, n)
	for r := range ins {
		ins[r] = randData(rng, oc.dt, oc.op, inCount)
	}
	const tail = 16
	sends, recvs := make([][]byte, n), make([][]byte, n)
	for r := range n {
		switch oc.kind {
		case kAllReduce, kAllToAll:
			if oc.inPlace {
				sends[r] = withTail(ins[r], tail)
				recvs[r] = sends[r]
			} else {
				sends[r], recvs[r] = withTail(ins[r], tail), canaryBuf(len(ins[r]), tail)
			}
		case kReduceScatter:
			sends[r] = withTail(ins[r], tail)
			if oc.inPlace {
				recvs[r] = sends[r][r*cb:]
			} else {
				recvs[r] = canaryBuf(cb, tail)
			}
		case kAllGather:
			if oc.inPlace {
				recvs[r] = canaryBuf(n*cb, tail)
				copy(recvs[r][r*cb:], ins[r])
				sends[r] = recvs[r][r*cb:]
			} else {
				sends[r], recvs[r] = withTail(ins[r], tail), canaryBuf(n*cb, tail)
			}
		case kBroadcast:
			recvs[r] = canaryBuf(cb, tail)
			if r == oc.root {
				if oc.inPlace {
					recvs[r] = withTail(ins[r], tail)
					sends[r] = recvs[r]
				} else {
					sends[r] = withTail(ins[r], tail)
				}
			}
		case kReduce:
			sends[r] = withTail(ins[r], tail)
			if r == oc.root {
				if oc.inPlace {
					recvs[r] = sends[r]
				} else {
					recvs[r] = canaryBuf(cb, tail)
				}
			}
		case kSendRecv:
			sends[r], recvs[r] = withTail(ins[r], tail), canaryBuf(cb, tail)
		}
	}
	mustAll(t, cl.do(func(r int, c *Comm) error {
		s, rv := sends[r], recvs[r]
		switch oc.kind {
		case kAllReduce:
			return c.AllReduce(bg(), s, rv, oc.count, oc.dt, oc.op)
		case kReduceScatter:
			return c.ReduceScatter(bg(), s, rv, oc.count, oc.dt, oc.op)
		case kAllGather:
			return c.AllGather(bg(), s, rv, oc.count, oc.dt)
		case kBroadcast:
			return c.Broadcast(bg(), s, rv, oc.count, oc.dt, oc.root)
		case kReduce:
			return c.Reduce(bg(), s, rv, oc.count, oc.dt, oc.op, oc.root)
		case kAllToAll:
			return c.AllToAll(bg(), s, rv, oc.count, oc.dt)
		}
		return c.Group(bg(),
			P2P{Peer: (r + 1) % n, Buf: s, Count: oc.count, DType: oc.dt},
			P2P{Recv: true, Peer: (r - 1 + n) % n, Buf: rv, Count: oc.count, DType: oc.dt})
	}))

	var want ref
	switch oc.kind {
	case kAllReduce, kReduce:
		want = reduceRef(oc.dt, oc.op, ins, 0, oc.count)
	case kReduceScatter:
		want = reduceRef(oc.dt, oc.op, ins, 0, n*oc.count)
	}
	for r := range n {
		what := fmt.Sprintf("rank %d", r)
		switch oc.kind {
		case kAllReduce:
			want.check(t, what, recvs[r])
			checkCanary(t, what, recvs[r][cb:])
		case kReduce:
			if r == oc.root {
				want.check(t, what, recvs[r])
				checkCanary(t, what, recvs[r][cb:])
			}
		case kReduceScatter:
			blk := want.block(r, oc.count)
			blk.check(t, what, recvs[r])
			if oc.inPlace {
				if !bytes.Equal(sends[r][:r*cb], ins[r][:r*cb]) || !bytes.Equal(sends[r][(r+1)*cb:n*cb], ins[r][(r+1)*cb:]) {
					t.Fatalf("%s: in-place reduce-scatter changed other ranks' blocks of send", what)
				}
				checkCanary(t, what, sends[r][n*cb:])
			} else {
				checkCanary(t, what, recvs[r][cb:])
			}
		case kAllGather:
			for j := range n {
				if !bytes.Equal(recvs[r][j*cb:(j+1)*cb], ins[j]) {
					t.Fatalf("%s: block %d differs from rank %d's input", what, j, j)
				}
			}
			checkCanary(t, what, recvs[r][n*cb:])
		case kBroadcast:
			if !bytes.Equal(recvs[r][:cb], ins[oc.root]) {
				t.Fatalf("%s: broadcast result differs from root %d's input", what, oc.root)
			}
			checkCanary(t, what, recvs[r][cb:])
		case kAllToAll:
			for j := range n {
				if !bytes.Equal(recvs[r][j*cb:(j+1)*cb], ins[j][r*cb:(r+1)*cb]) {
					t.Fatalf("%s: block %d differs from rank %d's block %d", what, j, j, r)
				}
			}
			checkCanary(t, what, recvs[r][n*cb:])
		case kSendRecv:
			if !bytes.Equal(recvs[r][:cb], ins[(r-1+n)%n]) {
				t.Fatalf("%s: received data differs from rank %d's", what, (r-1+n)%n)
			}
			checkCanary(t, what, recvs[r][cb:])
		}
		if sends[r] != nil && !oc.inPlace {
			if !bytes.Equal(sends[r][:len(ins[r])], ins[r]) {
				t.Fatalf("%s: out-of-place operation changed its send buffer", what)
			}
			checkCanary(t, what, sends[r][len(ins[r]):])
		}
	}
}

// block returns the reference of elements [r*count, (r+1)*count).
func (r ref) block(i, count int) ref {
	b := ref{dt: r.dt}
	if r.exact != nil {
		es := r.dt.Size()
		b.exact = r.exact[i*count*es : (i+1)*count*es]
	} else {
		b.val, b.tol = r.val[i*count:(i+1)*count], r.tol[i*count:(i+1)*count]
	}
	return b
}

var allAlgos = []Algo{Ring, Tree, Hierarchical, Auto}

// TestCollectiveTypes runs every operation for every type and operator,
// under every algorithm, on two small topologies, in and out of place, with
// chunks small enough that every call pipelines several of them.
func TestCollectiveTypes(t *testing.T) {
	topos := []struct {
		name  string
		hosts []string
	}{
		{"2x2", hostsOf(2, 2, false)},
		{"3x2-interleaved", hostsOf(3, 2, true)},
	}
	for _, tp := range topos {
		for _, algo := range allAlgos {
			t.Run(tp.name+"/"+algo.String(), func(t *testing.T) {
				cl := newCluster(t, tp.hosts, Options{Algo: algo, ChunkSize: 512, TreeThreshold: 2048})
				n := len(tp.hosts)
				seed := uint64(0)
				for _, dt := range DTypes {
					kinds := []kind{kAllReduce, kReduceScatter, kReduce, kBroadcast}
					if algo == Auto {
						// These do not depend on the algorithm.
						kinds = append(kinds, kAllGather, kAllToAll, kSendRecv)
					}
					for _, k := range kinds {
						ops := Ops
						if !k.reducing() {
							ops = []Op{Sum}
						}
						for _, op := range ops {
							for _, count := range []int{7, 1023} {
								for _, inPlace := range []bool{false, true} {
									seed++
									oc := opCase{kind: k, dt: dt, op: op, count: count, inPlace: inPlace, root: int(seed) % n}
									t.Run(oc.String(), func(t *testing.T) { runCase(t, cl, oc, seed) })
								}
							}
						}
					}
				}
			})
		}
	}
}

// TestCollectiveTopologies runs every operation on every topology of 1, 2,
// 3, 7 and 16 servers with 1 to 4 ranks each, for f32 sum and i32 avg,
// with uneven counts.
func TestCollectiveTopologies(t *testing.T) {
	ti := -1
	for _, servers := range []int{1, 2, 3, 7, 16} {
		for per := 1; per <= 4; per++ {
			ti++
			hosts := hostsOf(servers, per, false)
			n := len(hosts)
			for _, algo := range allAlgos {
				t.Run(fmt.Sprintf("%dx%d/%v", servers, per, algo), func(t *testing.T) {
					cl := newCluster(t, hosts, Options{Algo: algo, ChunkSize: 4096})
					seed := uint64(servers*100 + per*10 + int(algo))
					kinds := []kind{kAllReduce, kBroadcast, kReduce}
					if algo == Auto {
						// The others do not depend on the algorithm.
						kinds = append(kinds, kReduceScatter, kAllGather, kAllToAll, kSendRecv)
					}
					counts := []int{0, 1, 7, 1023}
					for _, k := range kinds {
						for _, dtop := range []struct {
							dt DType
							op Op
						}{{F32, Sum}, {I32, Avg}} {
							cs := counts
							if k == kAllReduce && dtop.dt == F32 && int(algo) == ti%len(allAlgos) {
								// The large count on every topology, each under one
								// algorithm in turn, to keep the run short.
								cs = append(cs, 100003)
							}
							for i, count := range cs {
								seed++
								if k == kReduceScatter || k == kAllGather || k == kAllToAll {
									count = (count + n - 1) / n // per rank: about count in all
								}
								oc := opCase{kind: k, dt: dtop.dt, op: dtop.op, count: count, inPlace: i%2 == 1, root: int(seed) % n}
								t.Run(oc.String(), func(t *testing.T) { runCase(t, cl, oc, seed) })
							}
						}
					}
				})
			}
		}
	}
}
