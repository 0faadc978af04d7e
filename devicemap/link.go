package devicemap

import (
	"cmp"
	"slices"
	"strconv"
	"time"
)

// LinkKind names how two logical devices are connected. The PCIe kinds are
// those of `nvidia-smi topo -m`.
type LinkKind string

// Link kinds, from closest to farthest.
const (
	LinkSelf    LinkKind = "X"    // the same logical device
	LinkSameGPU LinkKind = "VGPU" // two vGPUs of one physical GPU
	LinkNVLink  LinkKind = "NV"   // NVLink between two GPUs of one host
	LinkPIX     LinkKind = "PIX"  // PCIe through at most one bridge
	LinkPXB     LinkKind = "PXB"  // PCIe through several bridges, not the host bridge
	LinkPHB     LinkKind = "PHB"  // PCIe through a host bridge
	LinkNode    LinkKind = "NODE" // PCIe and the link between host bridges of one NUMA node
	LinkSys     LinkKind = "SYS"  // PCIe and the interconnect between NUMA nodes
	LinkNet     LinkKind = "NET"  // different hosts, across the network
)

var kindRank = map[LinkKind]int{
	LinkSelf: 0, LinkSameGPU: 1, LinkNVLink: 2, LinkPIX: 3, LinkPXB: 4,
	LinkPHB: 5, LinkNode: 6, LinkSys: 7, LinkNet: 8,
}

// Valid reports whether k is one of the kinds above.
func (k LinkKind) Valid() bool {
	_, ok := kindRank[k]
	return ok
}

// Rank orders kinds from closest (LinkSelf, 0) to farthest (LinkNet, 8); an
// unknown kind ranks after LinkNet.
func (k LinkKind) Rank() int {
	if r, ok := kindRank[k]; ok {
		return r
	}
	return len(kindRank)
}

// peerKind reports whether k may appear in a PeerLink: NVLink or a PCIe kind.
func (k LinkKind) peerKind() bool {
	switch k {
	case LinkNVLink, LinkPIX, LinkPXB, LinkPHB, LinkNode, LinkSys:
		return true
	}
	return false
}

// Link describes the connection between two logical devices.
type Link struct {
	Kind LinkKind `json:"kind"`
	// NVLinks is the number of bonded NVLinks when Kind is LinkNVLink.
	NVLinks int `json:"nvlinks,omitempty"`
	// RTT is the measured round-trip time of a LinkNet link; 0 if unknown.
	RTT time.Duration `json:"rttNs,omitempty"`
	// BandwidthBps is the measured bandwidth of a LinkNet link in bytes per
	// second; 0 if unknown.
	BandwidthBps float64 `json:"bandwidthBps,omitempty"`
}

// String returns the matrix label of l: "X", "NV18", "PIX", "NET", ...
func (l Link) String() string {
	if l.Kind == LinkNVLink {
		return "NV" + strconv.Itoa(l.NVLinks)
	}
	return string(l.Kind)
}

// Link returns the connection between logical devices i and j:
//   - the same vGPU: LinkSelf;
//   - two vGPUs of one physical GPU: LinkSameGPU;
//   - two GPUs of one host: the PeerLink of i's GPU naming j's GPU (or, when
//     i lists none, of j's GPU naming i's), else LinkSys;
//   - different hosts: LinkNet, with RTT and bandwidth from Net when measured.
//
// It returns the zero Link when i or j is outside the map.
func (m *Map) Link(i, j int) Link {
	if i < 0 || j < 0 || i >= len(m.Devices) || j >= len(m.Devices) {
		return Link{}
	}
	a, b := &m.Devices[i], &m.Devices[j]
	switch {
	case i == j || a.VGPU == b.VGPU:
		return Link{Kind: LinkSelf}
	case a.GPUUUID == b.GPUUUID:
		return Link{Kind: LinkSameGPU}
	case a.Host != b.Host:
		l := Link{Kind: LinkNet}
		if n, ok := m.netLink(a.Host, b.Host); ok {
			l.RTT, l.BandwidthBps = n.RTT, n.BandwidthBps
		}
		return l
	}
	if p, ok := findPeer(a.Peers, b.GPUUUID); ok {
		return Link{Kind: p.Kind, NVLinks: p.NVLinks}
	}
	if p, ok := findPeer(b.Peers, a.GPUUUID); ok {
		return Link{Kind: p.Kind, NVLinks: p.NVLinks}
	}
	return Link{Kind: LinkSys}
}

func findPeer(peers []PeerLink, uuid string) (PeerLink, bool) {
	for _, p := range peers {
		if p.PeerUUID == uuid {
			return p, true
		}
	}
	return PeerLink{}, false
}

// netLink returns the measured figures between two hosts, in either direction.
func (m *Map) netLink(from, to string) (NetLink, bool) {
	for _, n := range m.Net {
		if n.FromHost == from && n.ToHost == to {
			return n, true
		}
	}
	for _, n := range m.Net {
		if n.FromHost == to && n.ToHost == from {
			return n, true
		}
	}
	return NetLink{}, false
}

// islandRoots returns, for every device, an id shared exactly by the devices
// of one NVLink island: a connected component of the graph whose nodes are
// the physical GPUs of one host and whose edges are NV peer links (listed by
// either GPU) between GPUs present in devs. vGPUs of one GPU share an island.
func islandRoots(devs []Device) []int {
	gpuKey := func(host, uuid string) string { return host + "\x00" + uuid }
	node := make(map[string]int, len(devs))
	nodeOf := make([]int, len(devs))
	for i := range devs {
		k := gpuKey(devs[i].Host, devs[i].GPUUUID)
		n, ok := node[k]
		if !ok {
			n = len(node)
			node[k] = n
		}
		nodeOf[i] = n
	}
	parent := make([]int, len(node))
	for i := range parent {
		parent[i] = i
	}
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	for i := range devs {
		for _, p := range devs[i].Peers {
			if p.Kind != LinkNVLink {
				continue
			}
			n, ok := node[gpuKey(devs[i].Host, p.PeerUUID)]
			if !ok {
				continue
			}
			a, b := find(nodeOf[i]), find(n)
			if a != b {
				parent[max(a, b)] = min(a, b)
			}
		}
	}
	roots := make([]int, len(devs))
	for i := range devs {
		roots[i] = find(nodeOf[i])
	}
	return roots
}

// Islands returns the NVLink islands of the map as groups of logical indices.
// Every device is in exactly one group (a GPU without NVLink peers in the map
// forms its own); islands never span hosts. Indices in a group ascend, and
// groups are ordered by their first index.
func (m *Map) Islands() [][]int {
	roots := islandRoots(m.Devices)
	group := make(map[int]int)
	var out [][]int
	for i, r := range roots {
		g, ok := group[r]
		if !ok {
			g = len(out)
			group[r] = g
			out = append(out, nil)
		}
		out[g] = append(out[g], i)
	}
	return out
}

// Order sorts devs in place, stably, into the order of a logical device list:
//   - devices of one host together, hosts in order of first appearance in devs
//     (so a caller's host preference, such as the aggregator's placement, is
//     kept);
//   - inside a host, devices of one NVLink island together, islands ordered
//     by their first GPU (by server, then GPUIndex);
//   - inside an island, by server (order of first appearance), then GPUIndex,
//     then GPU UUID, then Slot.
//
// Order does not change Index; New renumbers after ordering.
func Order(devs []Device) {
	if len(devs) < 2 {
		return
	}
	hostRank := make(map[string]int)
	serverRank := make(map[string]int)
	for i := range devs {
		if _, ok := hostRank[devs[i].Host]; !ok {
			hostRank[devs[i].Host] = len(hostRank)
		}
		if _, ok := serverRank[devs[i].Server]; !ok {
			serverRank[devs[i].Server] = len(serverRank)
		}
	}
	type gpuPos struct {
		server, gpuIndex int
		uuid             string
	}
	cmpPos := func(a, b gpuPos) int {
		return cmp.Or(cmp.Compare(a.server, b.server), cmp.Compare(a.gpuIndex, b.gpuIndex), cmp.Compare(a.uuid, b.uuid))
	}
	roots := islandRoots(devs)
	first := make(map[int]gpuPos) // island root -> its first GPU
	pos := make([]gpuPos, len(devs))
	for i := range devs {
		pos[i] = gpuPos{serverRank[devs[i].Server], devs[i].GPUIndex, devs[i].GPUUUID}
		if f, ok := first[roots[i]]; !ok || cmpPos(pos[i], f) < 0 {
			first[roots[i]] = pos[i]
		}
	}
	perm := make([]int, len(devs))
	for i := range perm {
		perm[i] = i
	}
	slices.SortStableFunc(perm, func(a, b int) int {
		return cmp.Or(
			cmp.Compare(hostRank[devs[a].Host], hostRank[devs[b].Host]),
			cmpPos(first[roots[a]], first[roots[b]]),
			cmpPos(pos[a], pos[b]),
			cmp.Compare(devs[a].Slot, devs[b].Slot),
		)
	})
	sorted := make([]Device, len(devs))
	for i, p := range perm {
		sorted[i] = devs[p]
	}
	copy(devs, sorted)
}
