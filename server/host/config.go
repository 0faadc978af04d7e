package host

import (
	"errors"
	"fmt"
	"os"

	"github.com/xgpu/xgpu/server/backend"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultName            = "xgpu host device"
	DefaultMemory          = 8 << 30 // bytes per device
	DefaultComputeMajor    = 9       // sm_90, as an H100/H200
	DefaultComputeMinor    = 0
	DefaultMultiprocessors = 132
)

// Limits on Config values: beyond them a value is a mistake, not a machine.
const (
	maxDevices = 1024
	maxNVLinks = 64
)

// Config describes the emulated physical devices of a host Backend. The zero
// value is usable: one device of DefaultMemory bytes, linked to nothing.
type Config struct {
	// Devices is the number of emulated physical devices. Zero means 1.
	Devices int `json:"devices" yaml:"devices"`
	// Memory is each device's memory in bytes. Zero means DefaultMemory.
	// Memory is taken from the Go heap only when allocated (at Malloc), so
	// this may exceed the host's memory, but allocations beyond what the
	// host can back fail the process as an out-of-memory host would.
	Memory uint64 `json:"memory" yaml:"memory"`
	// Name is the devices' product name. Empty means DefaultName.
	Name string `json:"name" yaml:"name"`
	// HostID seeds the devices' UUIDs, "GPU-" and a UUID derived from
	// HostID and the device index, so that they are stable across restarts
	// and distinct across hosts. Empty means the host name.
	HostID string `json:"host_id" yaml:"host_id"`
	// NVLinks is the number of NVLink links every pair of devices reports,
	// emulating an HGX node. Zero means no NVLink: devices reach each other
	// over PCIe only. Every pair reports the PCIe relation "PHB" either way.
	NVLinks int `json:"nvlinks" yaml:"nvlinks"`
	// ComputeMajor and ComputeMinor are the compute capability the devices
	// report. Both zero means DefaultComputeMajor.DefaultComputeMinor.
	ComputeMajor int `json:"compute_major" yaml:"compute_major"`
	ComputeMinor int `json:"compute_minor" yaml:"compute_minor"`
	// Multiprocessors is the SM count the devices report. Zero means
	// DefaultMultiprocessors.
	Multiprocessors int `json:"multiprocessors" yaml:"multiprocessors"`
}

// Validate reports the first field out of range.
func (c Config) Validate() error {
	switch {
	case c.Devices < 0 || c.Devices > maxDevices:
		return fmt.Errorf("host: devices %d out of range [0, %d]", c.Devices, maxDevices)
	case c.Memory != 0 && c.Memory < backend.WindowAlignment:
		return fmt.Errorf("host: memory %d is less than the minimum %d", c.Memory, backend.WindowAlignment)
	case c.NVLinks < 0 || c.NVLinks > maxNVLinks:
		return fmt.Errorf("host: nvlinks %d out of range [0, %d]", c.NVLinks, maxNVLinks)
	case c.ComputeMajor < 0 || c.ComputeMinor < 0:
		return errors.New("host: compute capability must not be negative")
	case c.ComputeMajor == 0 && c.ComputeMinor != 0:
		return fmt.Errorf("host: compute capability 0.%d has no major version", c.ComputeMinor)
	case c.Multiprocessors < 0:
		return fmt.Errorf("host: multiprocessors %d is negative", c.Multiprocessors)
	}
	return nil
}

// withDefaults returns c with its zero fields replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Devices == 0 {
		c.Devices = 1
	}
	if c.Memory == 0 {
		c.Memory = DefaultMemory
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.HostID == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.HostID = h
		} else {
			c.HostID = "localhost"
		}
	}
	if c.ComputeMajor == 0 {
		c.ComputeMajor, c.ComputeMinor = DefaultComputeMajor, DefaultComputeMinor
	}
	if c.Multiprocessors == 0 {
		c.Multiprocessors = DefaultMultiprocessors
	}
	return c
}
