package devicemap

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestLink(t *testing.T) {
	// One host "h" with GPU 0 linked to GPUs 1..6 by every peer kind, GPU 7
	// with no entry, and GPU 2 listing GPU 7 (which lists nothing back).
	peers0 := []PeerLink{nv("s", 1, 12), pcie("s", 2, LinkPIX), pcie("s", 3, LinkPXB),
		pcie("s", 4, LinkPHB), pcie("s", 5, LinkNode), pcie("s", 6, LinkSys)}
	devs := []Device{
		gpu("h", "s", 0, 0, gib, peers0...),
		gpu("h", "s", 0, 1, gib, peers0...),
		gpu("h", "s", 1, 0, gib),
		gpu("h", "s", 2, 0, gib, pcie("s", 7, LinkPIX)),
		gpu("h", "s", 3, 0, gib),
		gpu("h", "s", 4, 0, gib),
		gpu("h", "s", 5, 0, gib),
		gpu("h", "s", 6, 0, gib),
		gpu("h", "s", 7, 0, gib),
		gpu("g", "t", 0, 0, gib),
		gpu("f", "u", 0, 0, gib),
	}
	net := []NetLink{{FromHost: "g", ToHost: "h", RTT: 40 * time.Microsecond, BandwidthBps: 25e9}}
	m, err := New(devs, KeepOrder(), WithNet(net))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		i, j int
		want Link
	}{
		{"self", 0, 0, Link{Kind: LinkSelf}},
		{"same GPU", 0, 1, Link{Kind: LinkSameGPU}},
		{"same GPU reversed", 1, 0, Link{Kind: LinkSameGPU}},
		{"NVLink", 0, 2, Link{Kind: LinkNVLink, NVLinks: 12}},
		{"NVLink from the second vGPU", 1, 2, Link{Kind: LinkNVLink, NVLinks: 12}},
		{"PIX", 0, 3, Link{Kind: LinkPIX}},
		{"PXB", 0, 4, Link{Kind: LinkPXB}},
		{"PHB", 0, 5, Link{Kind: LinkPHB}},
		{"NODE", 0, 6, Link{Kind: LinkNode}},
		{"SYS listed", 0, 7, Link{Kind: LinkSys}},
		{"SYS by default", 0, 8, Link{Kind: LinkSys}},
		{"reverse peer entry", 2, 0, Link{Kind: LinkNVLink, NVLinks: 12}},
		{"reverse peer entry, PCIe", 8, 3, Link{Kind: LinkPIX}},
		{"NET measured", 9, 0, Link{Kind: LinkNet, RTT: 40 * time.Microsecond, BandwidthBps: 25e9}},
		{"NET measured other direction", 0, 9, Link{Kind: LinkNet, RTT: 40 * time.Microsecond, BandwidthBps: 25e9}},
		{"NET unmeasured", 0, 10, Link{Kind: LinkNet}},
		{"out of range", 0, 11, Link{}},
		{"negative", -1, 0, Link{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Link(tt.i, tt.j); got != tt.want {
				t.Fatalf("Link(%d, %d) = %+v, want %+v", tt.i, tt.j, got, tt.want)
			}
		})
	}
}

func TestLinkKind(t *testing.T) {
	kinds := []LinkKind{LinkSelf, LinkSameGPU, LinkNVLink, LinkPIX, LinkPXB, LinkPHB, LinkNode, LinkSys, LinkNet}
	for r, k := range kinds {
		if !k.Valid() || k.Rank() != r {
			t.Errorf("%s: Valid %v Rank %d, want true %d", k, k.Valid(), k.Rank(), r)
		}
	}
	if LinkKind("nv").Valid() || LinkKind("XX").Rank() != len(kinds) {
		t.Error("unknown kind accepted")
	}
	labels := map[Link]string{
		{Kind: LinkNVLink, NVLinks: 18}: "NV18",
		{Kind: LinkSelf}:                "X",
		{Kind: LinkNet, RTT: 5}:         "NET",
		{Kind: LinkNode}:                "NODE",
	}
	for l, want := range labels {
		if l.String() != want {
			t.Errorf("%+v.String() = %q, want %q", l, l.String(), want)
		}
	}
}

func TestOrder(t *testing.T) {
	tests := []struct {
		name string
		in   []Device
		want []string // vGPU ids in order
	}{
		{
			name: "hosts kept together in order of first appearance",
			in: []Device{
				gpu("beta", "b", 1, 0, gib), gpu("alpha", "a", 0, 0, gib),
				gpu("beta", "b", 0, 0, gib), gpu("alpha", "a", 1, 0, gib),
				gpu("gamma", "c", 0, 0, gib), gpu("beta", "b", 2, 0, gib),
			},
			want: []string{"GPU-b-0/0", "GPU-b-1/0", "GPU-b-2/0", "GPU-a-0/0", "GPU-a-1/0", "GPU-c-0/0"},
		},
		{
			name: "NVLink islands together",
			in: []Device{
				gpu("h", "s", 0, 0, gib, nv("s", 2, 4)), gpu("h", "s", 1, 0, gib, nv("s", 3, 4)),
				gpu("h", "s", 2, 0, gib, nv("s", 0, 4)), gpu("h", "s", 3, 0, gib, nv("s", 1, 4)),
				gpu("h", "s", 4, 0, gib),
			},
			want: []string{"GPU-s-0/0", "GPU-s-2/0", "GPU-s-1/0", "GPU-s-3/0", "GPU-s-4/0"},
		},
		{
			name: "islands by transitive links, listed by one side only",
			in: []Device{
				gpu("h", "s", 3, 0, gib), gpu("h", "s", 0, 0, gib, nv("s", 3, 2)),
				gpu("h", "s", 1, 0, gib), gpu("h", "s", 2, 0, gib, nv("s", 3, 2)),
			},
			want: []string{"GPU-s-0/0", "GPU-s-2/0", "GPU-s-3/0", "GPU-s-1/0"},
		},
		{
			name: "vGPUs by slot, PCIe links do not make islands",
			in: []Device{
				gpu("h", "s", 1, 2, gib, pcie("s", 0, LinkPIX)), gpu("h", "s", 1, 0, gib, pcie("s", 0, LinkPIX)),
				gpu("h", "s", 0, 1, gib), gpu("h", "s", 0, 0, gib),
			},
			want: []string{"GPU-s-0/0", "GPU-s-0/1", "GPU-s-1/0", "GPU-s-1/2"},
		},
		{
			name: "two servers on one host, island across them",
			in: []Device{
				gpu("h", "s1", 0, 0, gib), gpu("h", "s2", 0, 0, gib, nv("s1", 1, 6)),
				gpu("h", "s1", 1, 0, gib), gpu("h", "s2", 1, 0, gib),
			},
			want: []string{"GPU-s1-0/0", "GPU-s1-1/0", "GPU-s2-0/0", "GPU-s2-1/0"},
		},
		{
			name: "peer on another host is no island",
			in: []Device{
				gpu("h1", "s", 1, 0, gib), gpu("h2", "t", 0, 0, gib),
				gpu("h1", "s", 0, 0, gib, PeerLink{PeerUUID: "GPU-t-0", Kind: LinkNVLink, NVLinks: 1}),
			},
			want: []string{"GPU-s-0/0", "GPU-s-1/0", "GPU-t-0/0"},
		},
		{name: "empty", in: nil, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devs := slices.Clone(tt.in)
			for i := range devs {
				devs[i].VGPU = VGPUID(devs[i].GPUUUID, devs[i].Slot)
			}
			Order(devs)
			got := make([]string, len(devs))
			for i, d := range devs {
				got[i] = d.VGPU
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Order = %v, want %v", got, tt.want)
			}
			m, err := New(tt.in)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if !slices.Equal(vgpus(m), tt.want) {
				t.Fatalf("New ordered %v, want %v", vgpus(m), tt.want)
			}
		})
	}
}

func TestOrderStable(t *testing.T) {
	// Devices equal in every key keep their relative order.
	a := gpu("h", "s", 0, 0, 1*gib)
	b := gpu("h", "s", 0, 0, 2*gib)
	c := gpu("h", "s", 0, 0, 3*gib)
	devs := []Device{b, c, a}
	Order(devs)
	if devs[0].MemoryQuota != 2*gib || devs[1].MemoryQuota != 3*gib || devs[2].MemoryQuota != 1*gib {
		t.Fatalf("Order is not stable: %v %v %v", devs[0].MemoryQuota, devs[1].MemoryQuota, devs[2].MemoryQuota)
	}
}

func TestIslands(t *testing.T) {
	tests := []struct {
		name string
		devs []Device
		opts []Option
		want [][]int
	}{
		{"two hosts", twoHostDevices(), nil, [][]int{{0, 1, 2}, {3}, {4}}},
		{
			name: "two islands of one host, kept order",
			devs: []Device{
				gpu("h", "s", 0, 0, gib, nv("s", 2, 4)), gpu("h", "s", 1, 0, gib, nv("s", 3, 4)),
				gpu("h", "s", 2, 0, gib), gpu("h", "s", 3, 0, gib),
			},
			opts: []Option{KeepOrder()},
			want: [][]int{{0, 2}, {1, 3}},
		},
		{"empty", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.devs, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Islands(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Islands = %v, want %v", got, tt.want)
			}
		})
	}
}
