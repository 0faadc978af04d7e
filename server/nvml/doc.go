// Package nvml lists the GPUs of this host through NVML (go-nvml): index,
// UUID, name, memory, PCI bus id, compute capability, SM count, and for every
// pair of GPUs the NVLink link count or the PCIe path between them, as
// `nvidia-smi topo -m` shows it.
//
// Usage:
//
//	gpus, err := (&nvml.Source{}).GPUs(ctx)
//	if errors.Is(err, nvml.ErrUnavailable) {
//		// no NVIDIA driver here, or a build without cgo: use the host backend
//	}
//
// Source implements server.GPUSource. The library is loaded with dlopen when
// GPUs is called, so binaries build and start on machines without a driver;
// the real implementation needs cgo on linux, and other builds return
// ErrNoCgo or ErrUnsupportedOS.
//
// A Source is safe for concurrent use: each GPUs call initialises NVML and
// shuts it down again, and NVML counts these references.
package nvml
