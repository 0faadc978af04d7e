package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag value for sizes such as 16GiB, 512MiB, 1.5TB or 4096.
type byteSize uint64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// parseSize parses a byte size with an optional binary (KiB..TiB) or decimal
// (KB..TB) unit, in any letter case; bare K, M, G and T are binary, as
// Kubernetes quantities and nvidia-smi read them.
func parseSize(s string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit such as 16GiB", s)
	}
	b := v * mult
	if b >= math.MaxUint64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return uint64(b), nil
}

// formatSize prints a size in the largest binary unit that keeps it readable.
func formatSize(b uint64) string {
	switch {
	case b >= 1<<40 && b%(1<<30) == 0:
		return trimFloat(float64(b)/(1<<40)) + "TiB"
	case b >= 1<<30:
		return trimFloat(float64(b)/(1<<30)) + "GiB"
	case b >= 1<<20:
		return trimFloat(float64(b)/(1<<20)) + "MiB"
	case b >= 1<<10:
		return trimFloat(float64(b)/(1<<10)) + "KiB"
	}
	return strconv.FormatUint(b, 10) + "B"
}

func trimFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}

func (b *byteSize) String() string { return formatSize(uint64(*b)) }
func (b *byteSize) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}
