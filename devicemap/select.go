package devicemap

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Select returns the map restricted to the devices a CUDA_VISIBLE_DEVICES
// style list names, in the list's order, re-indexed 0..k-1. Base, Window,
// LeaseID and the net links between the remaining hosts are kept, so device
// k of the result owns window k.
//
// spec is a comma-separated list; each entry (spaces around it ignored) is
//   - a decimal logical index of m, or
//   - an id starting with "GPU-": a vGPU id ("GPU-.../<slot>"), a GPU UUID, or
//     a prefix of either. A full GPU UUID or a prefix must match exactly one
//     device of m; a GPU with several vGPUs in m is named by its vGPU ids.
//
// As CUDA does, an empty spec selects no devices, and parsing stops at the
// first entry that is invalid, out of range, unknown or ambiguous: the devices
// before it are what CUDA would show. Select then returns that map together
// with a *SelectError naming the entry, so a caller emulating CUDA may use the
// map and report the error, and a strict caller rejects the list. A device
// named twice makes the whole list invalid: Select returns a nil map and a
// *SelectError wrapping ErrDuplicateDevice.
func (m *Map) Select(spec string) (*Map, error) {
	var chosen []int
	if spec == "" {
		return m.subset(chosen), nil
	}
	seen := make(map[int]int)
	for pos, raw := range strings.Split(spec, ",") {
		i, err := m.resolve(strings.TrimSpace(raw))
		if err != nil {
			return m.subset(chosen), &SelectError{Entry: raw, Pos: pos, Err: err}
		}
		if p, dup := seen[i]; dup {
			return nil, &SelectError{Entry: raw, Pos: pos,
				Err: fmt.Errorf("%w: device %d (%s) is also entry %d", ErrDuplicateDevice, i, m.Devices[i].VGPU, p)}
		}
		seen[i] = pos
		chosen = append(chosen, i)
	}
	return m.subset(chosen), nil
}

// resolve returns the logical index one list entry names.
func (m *Map) resolve(e string) (int, error) {
	if e == "" {
		return 0, fmt.Errorf("%w: empty", ErrInvalidEntry)
	}
	if allDigits(e) {
		i, err := strconv.Atoi(e)
		if err != nil || i >= len(m.Devices) {
			return 0, fmt.Errorf("%w: index %s (map has %d devices)", ErrNoSuchDevice, e, len(m.Devices))
		}
		return i, nil
	}
	if len(e) <= len("GPU-") || !strings.EqualFold(e[:len("GPU-")], "GPU-") {
		return 0, fmt.Errorf("%w: want a decimal index or a GPU-... id", ErrInvalidEntry)
	}
	for i := range m.Devices {
		if strings.EqualFold(m.Devices[i].VGPU, e) {
			return i, nil
		}
	}
	// A whole GPU UUID names that GPU only, even if it is a prefix of
	// another GPU's UUID; otherwise the entry is a prefix.
	exact := false
	for i := range m.Devices {
		if strings.EqualFold(m.Devices[i].GPUUUID, e) {
			exact = true
			break
		}
	}
	var matches []int
	for i := range m.Devices {
		d := &m.Devices[i]
		if exact && strings.EqualFold(d.GPUUUID, e) || !exact && hasPrefixFold(d.VGPU, e) {
			matches = append(matches, i)
		}
	}
	switch len(matches) {
	case 0:
		return 0, fmt.Errorf("%w: no device has this id", ErrNoSuchDevice)
	case 1:
		return matches[0], nil
	}
	var names []string
	for k, i := range matches {
		if k == 3 {
			names = append(names, "...")
			break
		}
		names = append(names, m.Devices[i].VGPU)
	}
	return 0, fmt.Errorf("%w: matches %d devices (%s); name a vGPU id", ErrAmbiguousDevice, len(matches), strings.Join(names, ", "))
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// subset returns a new map of the devices idx names, in that order.
func (m *Map) subset(idx []int) *Map {
	out := &Map{
		Version: m.Version,
		LeaseID: m.LeaseID,
		Base:    m.Base,
		Window:  m.Window,
		Devices: make([]Device, len(idx)),
	}
	hosts := make(map[string]bool)
	for k, i := range idx {
		out.Devices[k] = m.Devices[i].clone()
		out.Devices[k].Index = k
		hosts[out.Devices[k].Host] = true
	}
	for _, n := range m.Net {
		if hosts[n.FromHost] && hosts[n.ToHost] {
			out.Net = append(out.Net, n)
		}
	}
	return out
}

// Clone returns a deep copy of m that the caller may modify.
func (m *Map) Clone() *Map {
	c := *m
	c.Devices = make([]Device, len(m.Devices))
	for i := range m.Devices {
		c.Devices[i] = m.Devices[i].clone()
	}
	c.Net = slices.Clone(m.Net)
	return &c
}

// HostGroups returns the logical indices of the map grouped by host: groups
// in order of their first index, indices ascending in each. In a map built
// by New every group is a contiguous range.
func (m *Map) HostGroups() [][]int {
	group := make(map[string]int)
	var out [][]int
	for i := range m.Devices {
		g, ok := group[m.Devices[i].Host]
		if !ok {
			g = len(out)
			group[m.Devices[i].Host] = g
			out = append(out, nil)
		}
		out[g] = append(out[g], i)
	}
	return out
}
