package backend

import (
	"errors"
	"fmt"
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

func TestDeviceSpecValidate(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name string
		spec DeviceSpec
		want cudaerr.Error // Success: valid
	}{
		{"valid", DeviceSpec{Index: 0, WindowBase: 0x1000_0000_0000, WindowSize: 256 * gib, MemoryQuota: 80 * gib}, cudaerr.Success},
		{"valid without quota", DeviceSpec{Index: 3, WindowBase: WindowAlignment, WindowSize: WindowAlignment}, cudaerr.Success},
		{"quota equal to window", DeviceSpec{WindowBase: gib, WindowSize: gib, MemoryQuota: gib}, cudaerr.Success},
		{"window up to the top", DeviceSpec{WindowBase: 1<<64 - 2*WindowAlignment, WindowSize: WindowAlignment}, cudaerr.Success},
		{"negative index", DeviceSpec{Index: -1, WindowBase: gib, WindowSize: gib}, cudaerr.InvalidDevice},
		{"empty window", DeviceSpec{WindowBase: gib}, cudaerr.InvalidValue},
		{"window at zero", DeviceSpec{WindowSize: gib}, cudaerr.InvalidValue},
		{"misaligned base", DeviceSpec{WindowBase: gib + 4096, WindowSize: gib}, cudaerr.InvalidValue},
		{"misaligned size", DeviceSpec{WindowBase: gib, WindowSize: gib + 1}, cudaerr.InvalidValue},
		{"wraps", DeviceSpec{WindowBase: 1<<64 - WindowAlignment, WindowSize: 2 * WindowAlignment}, cudaerr.InvalidValue},
		{"ends exactly at 2^64", DeviceSpec{WindowBase: 1<<64 - WindowAlignment, WindowSize: WindowAlignment}, cudaerr.InvalidValue},
		{"quota above window", DeviceSpec{WindowBase: gib, WindowSize: gib, MemoryQuota: gib + 1}, cudaerr.InvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if got := cudaerr.Code(err); got != tt.want {
				t.Fatalf("Validate() = %v, want %v", err, tt.want.Name())
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	w := func(base, size uint64) DeviceSpec { return DeviceSpec{WindowBase: base, WindowSize: size} }
	tests := []struct {
		name string
		a, b DeviceSpec
		want bool
	}{
		{"same", w(100, 10), w(100, 10), true},
		{"adjacent below", w(90, 10), w(100, 10), false},
		{"adjacent above", w(110, 10), w(100, 10), false},
		{"inside", w(102, 2), w(100, 10), true},
		{"straddling the start", w(95, 10), w(100, 10), true},
		{"straddling the end", w(105, 10), w(100, 10), true},
		{"far", w(1000, 10), w(100, 10), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Overlaps(tt.b); got != tt.want {
				t.Fatalf("Overlaps = %v, want %v", got, tt.want)
			}
			if got := tt.b.Overlaps(tt.a); got != tt.want {
				t.Fatalf("Overlaps is not symmetric")
			}
		})
	}
}

func TestOpError(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantText string
		wantOp   string
		wantCode cudaerr.Error
	}{
		{
			"with detail",
			Errorf("host", "Free", cudaerr.InvalidValue, "%#x is not an allocation", 0x1000),
			"host: Free: 0x1000 is not an allocation: cudaErrorInvalidValue: invalid argument",
			"Free", cudaerr.InvalidValue,
		},
		{
			"bare code",
			Errorf("cuda", "StreamQuery", cudaerr.NotReady, ""),
			"cuda: StreamQuery: cudaErrorNotReady: device not ready",
			"StreamQuery", cudaerr.NotReady,
		},
		{
			"no backend name",
			&OpError{Op: "Open", Err: fmt.Errorf("window: %w", cudaerr.InvalidValue)},
			"backend: Open: window: cudaErrorInvalidValue: invalid argument",
			"Open", cudaerr.InvalidValue,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.wantText {
				t.Errorf("Error() = %q, want %q", got, tt.wantText)
			}
			if got := cudaerr.Code(tt.err); got != tt.wantCode {
				t.Errorf("Code = %v, want %v", got, tt.wantCode)
			}
			wrapped := fmt.Errorf("worker: %w", tt.err)
			if !Is(wrapped, tt.wantOp, tt.wantCode) {
				t.Errorf("Is(wrapped, %q, %v) = false", tt.wantOp, tt.wantCode)
			}
			if Is(wrapped, "Other", tt.wantCode) || Is(wrapped, tt.wantOp, cudaerr.Unknown) {
				t.Error("Is matched the wrong operation or code")
			}
			var oe *OpError
			if !errors.As(wrapped, &oe) || oe.Op != tt.wantOp {
				t.Errorf("errors.As found %+v", oe)
			}
			if !errors.Is(wrapped, tt.wantCode) {
				t.Error("errors.Is does not reach the code")
			}
		})
	}
	if Is(errors.New("plain"), "Free", cudaerr.Unknown) {
		t.Error("Is matched an error that is no OpError")
	}
}
