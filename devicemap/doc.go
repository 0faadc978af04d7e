// Package devicemap is the logical device list of xgpu: the ordered vGPUs of
// many hosts that an application sees as CUDA devices 0..n-1, with the
// virtual-address window each device owns and the links between them.
//
// # Usage
//
// The aggregator builds a map for a lease; the client runtime and the servers
// read it back:
//
//	m, err := devicemap.New(devs, devicemap.WithLeaseID(lease), devicemap.WithWindow(poolWindow))
//	data, err := m.Encode()           // indented JSON, stable
//	m, err = devicemap.Parse(data)    // strict: errors are *ParseError
//	m, err = m.Select(os.Getenv("CUDA_VISIBLE_DEVICES"))
//	i, ok := m.DeviceOf(ptr)          // which device a pointer belongs to
//	l := m.Link(0, 5)                 // NV18, SYS, NET, ...
//	err = m.Matrix(os.Stdout)         // like nvidia-smi topo -m
//
// # Order
//
// New applies Order: devices of one host together (hosts in order of first
// appearance), inside a host the devices of one NVLink island together, then
// by server, GPU index and vGPU slot. So a ring over indices 0..n-1 crosses
// the network once per host and NVLink islands are contiguous.
//
// # Address windows
//
// Logical device i owns [Base+i*Window, Base+(i+1)*Window). Window is a power
// of two, at least MinWindow (1 GiB), and Base a multiple of it, so every
// window is naturally aligned. WindowFor sizes the window from the largest
// device: an H200 (141 GiB) gets 256 GiB, so 448 of them fit between
// DefaultBase (16 TiB) and UserSpaceTop (128 TiB).
//
// # JSON map format, version 1
//
//	{
//	  "version": 1,                     // required; other versions are refused
//	  "leaseId": "lease-7",             // optional
//	  "base": 17592186044416,           // 0 or absent: DefaultBase
//	  "window": 274877906944,           // 0 or absent: WindowFor(largest device)
//	  "devices": [{
//	    "index": 0, "host": "h1", "server": "h1-0", "address": "10.0.0.1:7070",
//	    "gpuUuid": "GPU-8f0c...", "gpuIndex": 0, "vgpu": "GPU-8f0c.../0", "slot": 0,
//	    "memoryQuota": 151397597184,
//	    "properties": {"name": "NVIDIA H200", "computeCapability": "9.0",
//	      "pciBusId": "00000000:18:00.0", "multiprocessorCount": 132, "totalMemory": 151397597184},
//	    "peers": [{"peerUuid": "GPU-...", "kind": "NV", "nvlinks": 18}]
//	  }],
//	  "net": [{"fromHost": "h1", "toHost": "h2", "rttNs": 85000, "bandwidthBps": 12.5e9}]
//	}
//
// Unknown fields are errors. Bandwidths are bytes per second.
//
// # Link matrix JSON
//
// MatrixJSON writes one compact document:
//
//	{"version":1,
//	 "devices":[{"index":0,"host":"h1","server":"h1-0","gpuUuid":"GPU-...","vgpu":"GPU-.../0","name":"NVIDIA H200"}, ...],
//	 "links":[[{"kind":"X"},{"kind":"NV","nvlinks":18},{"kind":"NET","rttNs":85000,"bandwidthBps":12500000000}, ...], ...]}
//
// links[i][j] is Link(i, j): "kind" is always present; "nvlinks" only for
// NV; "rttNs" and "bandwidthBps" only for NET links with measured figures.
// "name" is omitted when unknown.
//
// # Concurrency
//
// Functions of the package are safe for concurrent use. A *Map returned by
// New, Parse, Load or Select is valid and is never modified by its methods,
// so any number of goroutines may call them at once, provided nobody
// modifies the Map's fields. DeviceOf, WindowOf and Len do not allocate.
package devicemap
