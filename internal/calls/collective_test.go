package calls

import (
	"errors"
	"reflect"
	"testing"

	"github.com/xgpu/xgpu/internal/wire"
)

func TestCollectiveOpcodesAreTheLast(t *testing.T) {
	if !Known(wire.Op(opLimit-1)) || wire.Op(opLimit-1) != OpCollGroup {
		t.Fatalf("opLimit %d does not follow the last opcode %d", opLimit, OpCollGroup)
	}
	for op := OpCommInit; op <= OpCommPeerDown; op++ {
		if !Known(op) {
			t.Errorf("opcode %d unknown", op)
		}
	}
	if Name(OpCollective) != "Collective" {
		t.Errorf("Name(OpCollective) = %q", Name(OpCollective))
	}
}

func TestPackColl(t *testing.T) {
	tests := []struct {
		name  string
		kind  CollKind
		dtype uint8
		op    uint8
		peer  uint32
	}{
		{"all-reduce f32 sum", CollAllReduce, 7, 0, 0},
		{"broadcast from the last rank", CollBroadcast, 9, 0, 65535},
		{"recv from a large rank", CollRecv, 1, 4, 1<<32 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, d, o, p, ok := UnpackColl(PackColl(tt.kind, tt.dtype, tt.op, tt.peer))
			if !ok || k != tt.kind || d != tt.dtype || o != tt.op || p != tt.peer {
				t.Fatalf("round trip gave %v %d %d %d %v", k, d, o, p, ok)
			}
		})
	}
	if _, _, _, _, ok := UnpackColl(1 << 24); ok {
		t.Error("UnpackColl accepted a set reserved bit")
	}
}

func TestCollBuffers(t *testing.T) {
	const n, c, e = 4, 10, 4 // ranks, count, element bytes
	tests := []struct {
		name             string
		kind             CollKind
		rank, peer       int
		send, recv       uint64
		count            uint64
		wantSend, wantRv uint64
		wantErr          bool
	}{
		{name: "all-reduce out of place", kind: CollAllReduce, send: 0, recv: 1000, count: c, wantSend: 40, wantRv: 40},
		{name: "all-reduce in place", kind: CollAllReduce, send: 64, recv: 64, count: c, wantSend: 40, wantRv: 40},
		{name: "all-reduce overlapping", kind: CollAllReduce, send: 0, recv: 20, count: c, wantErr: true},
		{name: "reduce-scatter in place", kind: CollReduceScatter, rank: 2, send: 0, recv: 80, count: c, wantSend: 160, wantRv: 40},
		{name: "reduce-scatter overlapping", kind: CollReduceScatter, rank: 2, send: 0, recv: 40, count: c, wantErr: true},
		{name: "all-gather in place", kind: CollAllGather, rank: 3, send: 120, recv: 0, count: c, wantSend: 40, wantRv: 160},
		{name: "all-gather overlapping", kind: CollAllGather, rank: 3, send: 0, recv: 0, count: c, wantErr: true},
		{name: "broadcast root", kind: CollBroadcast, rank: 1, peer: 1, send: 0, recv: 0, count: c, wantSend: 40, wantRv: 40},
		{name: "broadcast non-root ignores send", kind: CollBroadcast, rank: 0, peer: 1, send: 8, recv: 0, count: c, wantRv: 40},
		{name: "reduce non-root ignores recv", kind: CollReduce, rank: 0, peer: 1, send: 0, recv: 8, count: c, wantSend: 40},
		{name: "all-to-all", kind: CollAllToAll, send: 0, recv: 160, count: c, wantSend: 160, wantRv: 160},
		{name: "send", kind: CollSend, rank: 0, peer: 3, send: 0, count: c, wantSend: 40},
		{name: "recv", kind: CollRecv, rank: 0, peer: 3, recv: 0, count: c, wantRv: 40},
		{name: "send to itself", kind: CollSend, rank: 2, peer: 2, count: c, wantErr: true},
		{name: "root out of range", kind: CollBroadcast, peer: n, count: c, wantErr: true},
		{name: "count overflows", kind: CollAllGather, count: 1 << 62, wantErr: true},
		{name: "zero count", kind: CollAllReduce, send: 0, recv: 0, count: 0},
		{name: "unknown kind", kind: 0, count: c, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, r, err := CollBuffers(tt.kind, tt.rank, n, tt.peer, tt.count, e, tt.send, tt.recv)
			if tt.wantErr {
				if !errors.Is(err, ErrBadCollective) {
					t.Fatalf("err = %v, want ErrBadCollective", err)
				}
				return
			}
			if err != nil || s != tt.wantSend || r != tt.wantRv {
				t.Fatalf("got %d, %d, %v; want %d, %d", s, r, err, tt.wantSend, tt.wantRv)
			}
		})
	}
}

func sampleInit() CommInit {
	return CommInit{
		Options: CommOptions{Algo: 1, ChunkSize: 1 << 20, Pipeline: 4, TreeThreshold: -1, Timeout: 5e9, InitTimeout: 3e9},
		Workers: []CommWorker{
			{Addr: "127.0.0.1:7000", Token: "0123456789abcdef", Pin: "ab", Host: "h0"},
			{Addr: "127.0.0.1:7001", Token: "fedcba9876543210", Host: "h1"},
		},
		Ranks: []CommRank{{Dev: 0, Worker: 0}, {Dev: 1, Worker: 0}, {Dev: 2, Worker: 1}},
	}
}

func TestCommInitRoundTrip(t *testing.T) {
	in := sampleInit()
	var e wire.Enc
	if err := in.Encode(&e); err != nil {
		t.Fatal(err)
	}
	var out CommInit
	if err := out.Decode(e.B); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, want %+v", out, in)
	}
	if k := in.Workers[0].Key(); k != "127.0.0.1:7000|ab" {
		t.Errorf("Key = %q", k)
	}
	for cut := range len(e.B) {
		if err := out.Decode(e.B[:cut]); !errors.Is(err, ErrBadCollective) {
			t.Fatalf("decoding %d of %d bytes: err = %v", cut, len(e.B), err)
		}
	}
	if err := out.Decode(append(e.B, 0)); !errors.Is(err, ErrBadCollective) {
		t.Fatalf("trailing byte: err = %v", err)
	}
}

func TestCommInitRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*CommInit)
	}{
		{"no ranks", func(c *CommInit) { c.Ranks = nil }},
		{"no workers", func(c *CommInit) { c.Workers = nil }},
		{"rank on a missing worker", func(c *CommInit) { c.Ranks[2].Worker = 2 }},
		{"more workers than ranks", func(c *CommInit) { c.Ranks = c.Ranks[:1] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ci := sampleInit()
			tt.mutate(&ci)
			var e wire.Enc
			if err := ci.Encode(&e); !errors.Is(err, ErrBadCollective) {
				t.Fatalf("Encode = %v, want ErrBadCollective", err)
			}
		})
	}
	// A table whose rank names a worker that is not there.
	ci := sampleInit()
	var e wire.Enc
	if err := ci.Encode(&e); err != nil {
		t.Fatal(err)
	}
	e.B[len(e.B)-4] = 9
	var out CommInit
	if err := out.Decode(e.B); !errors.Is(err, ErrBadCollective) {
		t.Fatalf("Decode = %v, want ErrBadCollective", err)
	}
}

func FuzzCommInitDecode(f *testing.F) {
	ci := sampleInit()
	var e wire.Enc
	_ = ci.Encode(&e)
	f.Add(e.B)
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out CommInit
		if out.Decode(b) != nil {
			return
		}
		var e wire.Enc
		if err := out.Encode(&e); err != nil {
			t.Fatalf("a decoded table does not encode: %v", err)
		}
		if string(e.B) != string(b) {
			t.Fatal("re-encoding differs")
		}
	})
}

func TestGroupRoundTrip(t *testing.T) {
	ops := []GroupOp{
		{Recv: false, DType: 7, Peer: 1, Buf: 0x1000_0000_0000, Count: 1 << 20},
		{Recv: true, DType: 7, Peer: 3, Buf: 0x1000_0040_0000, Count: 1 << 20},
		{Recv: true, DType: 1, Peer: 0, Buf: 0x1000_0080_0000, Count: 0},
	}
	var e wire.Enc
	if err := EncodeGroup(&e, ops); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeGroup(e.B, uint64(len(ops)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ops) {
		t.Fatalf("decoded %v, want %v", got, ops)
	}
	bad := []struct {
		name string
		b    []byte
		n    uint64
	}{
		{"empty", nil, 0},
		{"count differs from the call", e.B, 2},
		{"truncated", e.B[:len(e.B)-1], 3},
		{"trailing byte", append(append([]byte(nil), e.B...), 0), 3},
		{"version", append([]byte{9}, e.B[1:]...), 3},
		{"flags", func() []byte { b := append([]byte(nil), e.B...); b[5] = 2; return b }(), 3},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeGroup(tt.b, tt.n); !errors.Is(err, ErrBadCollective) {
				t.Fatalf("DecodeGroup = %v, want ErrBadCollective", err)
			}
		})
	}
	for _, n := range []int{0, MaxGroupOps + 1} {
		var e wire.Enc
		if err := EncodeGroup(&e, make([]GroupOp, n)); !errors.Is(err, ErrBadCollective) {
			t.Errorf("EncodeGroup of %d operations = %v, want ErrBadCollective", n, err)
		}
	}
	if _, err := GroupBytes(GroupOp{Peer: 4, Count: 1}, 4, 4); !errors.Is(err, ErrBadCollective) {
		t.Errorf("GroupBytes of peer 4 of 4 = %v", err)
	}
	if _, err := GroupBytes(GroupOp{Peer: 0, Count: 1 << 62}, 4, 8); !errors.Is(err, ErrBadCollective) {
		t.Errorf("GroupBytes overflow = %v", err)
	}
	if n, err := GroupBytes(GroupOp{Peer: 3, Count: 5}, 4, 8); err != nil || n != 40 {
		t.Errorf("GroupBytes = %d, %v; want 40", n, err)
	}
}

func FuzzDecodeGroup(f *testing.F) {
	var e wire.Enc
	_ = EncodeGroup(&e, []GroupOp{{Recv: true, DType: 7, Peer: 1, Buf: 1 << 44, Count: 9}})
	f.Add(e.B, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, n uint64) {
		ops, err := DecodeGroup(b, n)
		if err != nil {
			return
		}
		var e wire.Enc
		if err := EncodeGroup(&e, ops); err != nil {
			t.Fatalf("a decoded group does not encode: %v", err)
		}
		if string(e.B) != string(b) {
			t.Fatal("re-encoding differs")
		}
	})
}
