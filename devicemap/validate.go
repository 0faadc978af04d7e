package devicemap

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Validate checks every rule of a map and returns a *ParseError naming the
// first problem found, or nil:
//   - Version is Version;
//   - Window is a power of two >= MinWindow; Base is a non-zero multiple of
//     Window; all windows end at or below UserSpaceTop;
//   - Devices[i].Index == i; Host, Server, Address (host:port), GPUUUID
//     ("GPU-" and letters, digits, '-', '_', '.') are set; GPUIndex and Slot
//     are >= 0; VGPU is "<GPUUUID>/<Slot>" and unique; MemoryQuota is > 0 and
//     fits the window and the GPU's TotalMemory (when known);
//   - devices of one GPU agree on host, server, GPU index, properties and
//     peers; devices of one
//     server agree on host and address; two servers do not share an address;
//   - peer links name another GPU once each, with an NV or PCIe kind, and
//     NVLinks > 0 exactly for NV;
//   - net links name two different hosts once per direction, with RTT and
//     bandwidth >= 0.
func (m *Map) Validate() error {
	if m == nil {
		return mapErr("", msg("nil map"))
	}
	if err := checkVersion(m.Version); err != nil {
		return err
	}
	if err := m.validateWindows(); err != nil {
		return err
	}
	if err := m.validateDevices(); err != nil {
		return err
	}
	return m.validateNet()
}

func checkVersion(v int) *ParseError {
	switch {
	case v == Version:
		return nil
	case v == 0:
		return mapErr("version", msg("missing"))
	default:
		return mapErr("version", fmt.Errorf("%w %d (this build reads version %d)", ErrUnsupportedVersion, v, Version))
	}
}

func (m *Map) validateWindows() error {
	w := m.Window
	switch {
	case w == 0:
		return mapErr("window", msg("missing"))
	case w&(w-1) != 0:
		return mapErr("window", fmt.Errorf("%#x is not a power of two", w))
	case w < MinWindow:
		return mapErr("window", fmt.Errorf("%#x is smaller than the minimum %#x (1 GiB)", w, MinWindow))
	case m.Base == 0:
		return mapErr("base", msg("missing"))
	case m.Base%w != 0:
		return mapErr("base", fmt.Errorf("%#x is not a multiple of the window %#x", m.Base, w))
	case m.Base >= UserSpaceTop:
		return mapErr("base", fmt.Errorf("%#x is at or above the top of user space %#x", m.Base, UserSpaceTop))
	}
	fit := (UserSpaceTop - m.Base) / w
	if n := uint64(len(m.Devices)); n > fit {
		return mapErr("devices", fmt.Errorf("%d windows of %#x from base %#x end past the top of user space %#x; at most %d fit",
			n, w, m.Base, UserSpaceTop, fit))
	}
	return nil
}

func (m *Map) validateDevices() error {
	type gpuInfo struct {
		first    int
		host     string
		server   string
		gpuIndex int
	}
	vgpus := make(map[string]int, len(m.Devices))
	gpus := make(map[string]gpuInfo)
	servers := make(map[string]int)      // server id -> first device
	addrs := make(map[string]int)        // address -> first device
	serverGPU := make(map[string]string) // server + "\x00" + gpu index -> GPU UUID
	for i := range m.Devices {
		d := &m.Devices[i]
		if err := m.validateDevice(i, d); err != nil {
			return err
		}
		if j, ok := vgpus[d.VGPU]; ok {
			return devErr(i, "vgpu", fmt.Errorf("%q duplicates device %d", d.VGPU, j))
		}
		vgpus[d.VGPU] = i
		if g, ok := gpus[d.GPUUUID]; ok {
			switch {
			case g.host != d.Host:
				return devErr(i, "host", fmt.Errorf("%q, but GPU %s is on host %q (device %d)", d.Host, d.GPUUUID, g.host, g.first))
			case g.server != d.Server:
				return devErr(i, "server", fmt.Errorf("%q, but GPU %s is served by %q (device %d)", d.Server, d.GPUUUID, g.server, g.first))
			case g.gpuIndex != d.GPUIndex:
				return devErr(i, "gpuIndex", fmt.Errorf("%d, but GPU %s has index %d (device %d)", d.GPUIndex, d.GPUUUID, g.gpuIndex, g.first))
			case d.Properties != m.Devices[g.first].Properties:
				return devErr(i, "properties", fmt.Errorf("differ from those of GPU %s in device %d", d.GPUUUID, g.first))
			case !slices.Equal(d.Peers, m.Devices[g.first].Peers):
				return devErr(i, "peers", fmt.Errorf("differ from those of GPU %s in device %d", d.GPUUUID, g.first))
			}
		} else {
			gpus[d.GPUUUID] = gpuInfo{i, d.Host, d.Server, d.GPUIndex}
		}
		if j, ok := servers[d.Server]; ok {
			s := &m.Devices[j]
			switch {
			case s.Host != d.Host:
				return devErr(i, "host", fmt.Errorf("%q, but server %q is on host %q (device %d)", d.Host, d.Server, s.Host, j))
			case s.Address != d.Address:
				return devErr(i, "address", fmt.Errorf("%q, but server %q has address %q (device %d)", d.Address, d.Server, s.Address, j))
			}
		} else {
			servers[d.Server] = i
			if j, ok := addrs[d.Address]; ok {
				return devErr(i, "address", fmt.Errorf("%q is also the address of server %q (device %d)", d.Address, m.Devices[j].Server, j))
			}
			addrs[d.Address] = i
		}
		k := d.Server + "\x00" + strconv.Itoa(d.GPUIndex)
		if u, ok := serverGPU[k]; ok && u != d.GPUUUID {
			return devErr(i, "gpuIndex", fmt.Errorf("GPU %d of server %q is both %s and %s", d.GPUIndex, d.Server, u, d.GPUUUID))
		}
		serverGPU[k] = d.GPUUUID
	}
	return nil
}

func (m *Map) validateDevice(i int, d *Device) error {
	if d.Index != i {
		return devErr(i, "index", fmt.Errorf("is %d, want %d (devices are listed in index order)", d.Index, i))
	}
	if err := checkName(d.Host); err != nil {
		return devErr(i, "host", err)
	}
	if err := checkName(d.Server); err != nil {
		return devErr(i, "server", err)
	}
	if err := checkAddress(d.Address); err != nil {
		return devErr(i, "address", err)
	}
	if err := checkUUID(d.GPUUUID); err != nil {
		return devErr(i, "gpuUuid", err)
	}
	if d.GPUIndex < 0 {
		return devErr(i, "gpuIndex", fmt.Errorf("%d is negative", d.GPUIndex))
	}
	if d.Slot < 0 {
		return devErr(i, "slot", fmt.Errorf("%d is negative", d.Slot))
	}
	if want := VGPUID(d.GPUUUID, d.Slot); d.VGPU != want {
		return devErr(i, "vgpu", fmt.Errorf("is %q, want %q (<gpuUuid>/<slot>)", d.VGPU, want))
	}
	switch {
	case d.MemoryQuota == 0:
		return devErr(i, "memoryQuota", msg("zero"))
	case d.MemoryQuota > m.Window:
		return devErr(i, "memoryQuota", fmt.Errorf("%d bytes do not fit the window of %d bytes", d.MemoryQuota, m.Window))
	case d.Properties.TotalMemory != 0 && d.MemoryQuota > d.Properties.TotalMemory:
		return devErr(i, "memoryQuota", fmt.Errorf("%d bytes exceed the GPU's totalMemory of %d bytes", d.MemoryQuota, d.Properties.TotalMemory))
	}
	if cc := d.Properties.ComputeCapability; cc != "" && !validCC(cc) {
		return devErr(i, "properties.computeCapability", fmt.Errorf("%q is not major.minor", cc))
	}
	if d.Properties.MultiprocessorCount < 0 {
		return devErr(i, "properties.multiprocessorCount", fmt.Errorf("%d is negative", d.Properties.MultiprocessorCount))
	}
	for k, p := range d.Peers {
		field := "peers[" + strconv.Itoa(k) + "]"
		if err := checkUUID(p.PeerUUID); err != nil {
			return devErr(i, field+".peerUuid", err)
		}
		if p.PeerUUID == d.GPUUUID {
			return devErr(i, field+".peerUuid", msg("names the device's own GPU"))
		}
		if _, dup := findPeer(d.Peers[:k], p.PeerUUID); dup {
			return devErr(i, field+".peerUuid", fmt.Errorf("%s is listed twice", p.PeerUUID))
		}
		if !p.Kind.peerKind() {
			return devErr(i, field+".kind", fmt.Errorf("%q is not NV, PIX, PXB, PHB, NODE or SYS", p.Kind))
		}
		if p.Kind == LinkNVLink && p.NVLinks <= 0 {
			return devErr(i, field+".nvlinks", fmt.Errorf("%d, want > 0 for an NV link", p.NVLinks))
		}
		if p.Kind != LinkNVLink && p.NVLinks != 0 {
			return devErr(i, field+".nvlinks", fmt.Errorf("%d on a %s link, want 0", p.NVLinks, p.Kind))
		}
	}
	return nil
}

func (m *Map) validateNet() error {
	seen := make(map[[2]string]int, len(m.Net))
	for k, n := range m.Net {
		field := "net[" + strconv.Itoa(k) + "]"
		if err := checkName(n.FromHost); err != nil {
			return mapErr(field+".fromHost", err)
		}
		if err := checkName(n.ToHost); err != nil {
			return mapErr(field+".toHost", err)
		}
		if n.FromHost == n.ToHost {
			return mapErr(field+".toHost", fmt.Errorf("%q is the same host as fromHost", n.ToHost))
		}
		if j, ok := seen[[2]string{n.FromHost, n.ToHost}]; ok {
			return mapErr(field, fmt.Errorf("%s -> %s is also net[%d]", n.FromHost, n.ToHost, j))
		}
		seen[[2]string{n.FromHost, n.ToHost}] = k
		if n.RTT < 0 {
			return mapErr(field+".rttNs", fmt.Errorf("%d is negative", n.RTT))
		}
		if n.BandwidthBps < 0 || math.IsNaN(n.BandwidthBps) || math.IsInf(n.BandwidthBps, 0) {
			return mapErr(field+".bandwidthBps", fmt.Errorf("%v is not a bandwidth", n.BandwidthBps))
		}
	}
	return nil
}

// checkName accepts a non-empty identifier without spaces or control bytes.
func checkName(s string) error {
	if s == "" {
		return msg("missing")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%q contains a space or control character", s)
		}
	}
	return nil
}

func checkAddress(s string) error {
	if s == "" {
		return msg("missing")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if checkName(host) != nil {
		return fmt.Errorf("%q has a space or control character in its host", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q has no valid port (1-65535)", s)
	}
	return nil
}

func checkUUID(s string) error {
	if s == "" {
		return msg("missing")
	}
	rest, ok := strings.CutPrefix(s, "GPU-")
	if !ok || rest == "" {
		return fmt.Errorf("%q is not a GPU-... UUID", s)
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q has a character other than letters, digits, '-', '_' and '.'", s)
		}
	}
	return nil
}

func validCC(s string) bool {
	maj, mnr, ok := strings.Cut(s, ".")
	return ok && allDigits(maj) && allDigits(mnr)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
