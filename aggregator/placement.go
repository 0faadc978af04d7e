package aggregator

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Placement says how an allocation spreads over the pool.
type Placement int

const (
	// PlacementPack puts a lease on as few hosts as possible and, inside a
	// host, on as few NVLink islands (then GPUs) as possible. At each level
	// it takes the unit whose free count fits the rest of the request most
	// tightly, or, when none holds it all, the unit with the most free
	// vGPUs, and repeats; large holes stay open for large requests.
	PlacementPack Placement = iota
	// PlacementSpread deals vGPUs round-robin across hosts, the hosts with
	// the most free vGPUs first, and round-robin across GPUs inside a host.
	PlacementSpread
)

// String returns "pack" or "spread".
func (p Placement) String() string {
	switch p {
	case PlacementPack:
		return "pack"
	case PlacementSpread:
		return "spread"
	}
	return fmt.Sprintf("Placement(%d)", int(p))
}

// ParsePlacement parses "pack" or "spread" (any case).
func ParsePlacement(s string) (Placement, error) {
	switch strings.ToLower(s) {
	case "pack":
		return PlacementPack, nil
	case "spread":
		return PlacementSpread, nil
	}
	return 0, errorf(ErrInvalid, "placement %q: want pack or spread", s)
}

// candidate is a free vGPU a placement may choose.
type candidate struct {
	VGPU     string
	Server   string
	Host     string
	Island   int // NVLink island, unique in the pool
	GPU      string
	GPUIndex int
	Slot     int
}

// comparePool orders candidates in pool order: host, server, GPU index,
// GPU, slot, vGPU id.
func comparePool(a, b candidate) int {
	return cmp.Or(
		strings.Compare(a.Host, b.Host),
		strings.Compare(a.Server, b.Server),
		cmp.Compare(a.GPUIndex, b.GPUIndex),
		strings.Compare(a.GPU, b.GPU),
		cmp.Compare(a.Slot, b.Slot),
		strings.Compare(a.VGPU, b.VGPU),
	)
}

// place chooses n of the free vGPUs cands by placement p. The result lists
// the chosen vGPUs host by host, in the order the placement preferred the
// hosts (devicemap.Order keeps that order). It is deterministic: the order
// of cands does not matter. It returns an *InsufficientError when fewer
// than n candidates are given.
func place(cands []candidate, n int, p Placement) ([]candidate, error) {
	if n <= 0 {
		return nil, errorf(ErrInvalid, "placement of %d vGPUs", n)
	}
	if len(cands) < n {
		return nil, &InsufficientError{Free: len(cands), Asked: n}
	}
	sorted := slices.Clone(cands)
	slices.SortFunc(sorted, comparePool)
	switch p {
	case PlacementPack:
		return pack(sorted, n, packLevels), nil
	case PlacementSpread:
		return spread(sorted, n), nil
	}
	return nil, errorf(ErrInvalid, "unknown placement %d", int(p))
}

// packLevels are the units pack minimises, outermost first.
var packLevels = []func(c *candidate) string{
	func(c *candidate) string { return c.Host },
	func(c *candidate) string { return c.Host + "\x00" + fmt.Sprint(c.Island) },
	func(c *candidate) string { return c.GPU },
}

// group is the candidates of one unit, in pool order.
type group struct{ members []candidate }

// groupBy splits cands (in pool order) into units by key, in order of first
// appearance.
func groupBy(cands []candidate, key func(*candidate) string) []group {
	index := make(map[string]int)
	var gs []group
	for i := range cands {
		k := key(&cands[i])
		g, ok := index[k]
		if !ok {
			g = len(gs)
			index[k] = g
			gs = append(gs, group{})
		}
		gs[g].members = append(gs[g].members, cands[i])
	}
	return gs
}

// pack takes n of cands (n <= len(cands)) from as few units of the first
// level as possible, then recurses into each unit with the next levels.
// When one unit holds everything still needed, the tightest such unit is
// taken (first in pool order on ties); otherwise the largest unit is taken
// whole and the rest is placed the same way. Taking the largest units
// first minimises the number of units; fitting the last one tightly keeps
// the large holes open.
func pack(cands []candidate, n int, levels []func(*candidate) string) []candidate {
	if len(levels) == 0 {
		return cands[:n]
	}
	gs := groupBy(cands, levels[0])
	used := make([]bool, len(gs))
	out := make([]candidate, 0, n)
	for need := n; need > 0; {
		fit, largest := -1, -1
		for i, g := range gs {
			if used[i] {
				continue
			}
			size := len(g.members)
			if size >= need && (fit < 0 || size < len(gs[fit].members)) {
				fit = i
			}
			if largest < 0 || size > len(gs[largest].members) {
				largest = i
			}
		}
		pick, take := fit, need
		if fit < 0 {
			pick, take = largest, len(gs[largest].members)
		}
		used[pick] = true
		out = append(out, pack(gs[pick].members, take, levels[1:])...)
		need -= take
	}
	return out
}

// spread deals n of cands round-robin over hosts, most free vGPUs first
// (pool order on ties); inside a host it deals round-robin over GPUs.
func spread(cands []candidate, n int) []candidate {
	hosts := groupBy(cands, func(c *candidate) string { return c.Host })
	slices.SortStableFunc(hosts, func(a, b group) int { return cmp.Compare(len(b.members), len(a.members)) })
	queues := make([][]candidate, len(hosts))
	for i, h := range hosts {
		queues[i] = interleave(groupBy(h.members, func(c *candidate) string { return c.GPU }))
	}
	picked := make([][]candidate, len(hosts))
	for taken := 0; taken < n; {
		for i := range queues {
			if taken == n {
				break
			}
			if len(queues[i]) == 0 {
				continue
			}
			picked[i] = append(picked[i], queues[i][0])
			queues[i] = queues[i][1:]
			taken++
		}
	}
	out := make([]candidate, 0, n)
	for _, p := range picked {
		out = append(out, p...)
	}
	return out
}

// interleave returns the members of gs round-robin: the first of each
// group, then the second of each, and so on.
func interleave(gs []group) []candidate {
	var out []candidate
	for k := 0; ; k++ {
		added := false
		for _, g := range gs {
			if k < len(g.members) {
				out = append(out, g.members[k])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}
