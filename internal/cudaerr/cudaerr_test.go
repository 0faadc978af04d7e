package cudaerr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestValues pins the numeric values against the CUDA 13 runtime's
// driver_types.h: a wrong value would hand applications a different error
// than the one that happened.
func TestValues(t *testing.T) {
	tests := []struct {
		name string
		code Error
		want int32
	}{
		{"cudaSuccess", Success, 0},
		{"cudaErrorInvalidValue", InvalidValue, 1},
		{"cudaErrorMemoryAllocation", MemoryAllocation, 2},
		{"cudaErrorInitializationError", InitializationError, 3},
		{"cudaErrorCudartUnloading", CudartUnloading, 4},
		{"cudaErrorInvalidConfiguration", InvalidConfiguration, 9},
		{"cudaErrorInvalidDevicePointer", InvalidDevicePointer, 17},
		{"cudaErrorInvalidMemcpyDirection", InvalidMemcpyDirection, 21},
		{"cudaErrorInsufficientDriver", InsufficientDriver, 35},
		{"cudaErrorDevicesUnavailable", DevicesUnavailable, 46},
		{"cudaErrorMissingConfiguration", MissingConfiguration, 52},
		{"cudaErrorInvalidDeviceFunction", InvalidDeviceFunction, 98},
		{"cudaErrorNoDevice", NoDevice, 100},
		{"cudaErrorInvalidDevice", InvalidDevice, 101},
		{"cudaErrorStartupFailure", StartupFailure, 127},
		{"cudaErrorInvalidKernelImage", InvalidKernelImage, 200},
		{"cudaErrorDeviceUninitialized", DeviceUninitialized, 201},
		{"cudaErrorNoKernelImageForDevice", NoKernelImageForDevice, 209},
		{"cudaErrorPeerAccessUnsupported", PeerAccessUnsupported, 217},
		{"cudaErrorInvalidPtx", InvalidPtx, 218},
		{"cudaErrorContained", Contained, 226},
		{"cudaErrorOperatingSystem", OperatingSystem, 304},
		{"cudaErrorInvalidResourceHandle", InvalidResourceHandle, 400},
		{"cudaErrorIllegalState", IllegalState, 401},
		{"cudaErrorSymbolNotFound", SymbolNotFound, 500},
		{"cudaErrorNotReady", NotReady, 600},
		{"cudaErrorIllegalAddress", IllegalAddress, 700},
		{"cudaErrorLaunchOutOfResources", LaunchOutOfResources, 701},
		{"cudaErrorPeerAccessAlreadyEnabled", PeerAccessAlreadyEnabled, 704},
		{"cudaErrorPeerAccessNotEnabled", PeerAccessNotEnabled, 705},
		{"cudaErrorSetOnActiveProcess", SetOnActiveProcess, 708},
		{"cudaErrorContextIsDestroyed", ContextIsDestroyed, 709},
		{"cudaErrorAssert", Assert, 710},
		{"cudaErrorLaunchFailure", LaunchFailure, 719},
		{"cudaErrorTensorMemoryLeak", TensorMemoryLeak, 721},
		{"cudaErrorNotPermitted", NotPermitted, 800},
		{"cudaErrorNotSupported", NotSupported, 801},
		{"cudaErrorStreamCaptureUnsupported", StreamCaptureUnsupported, 900},
		{"cudaErrorTimeout", Timeout, 909},
		{"cudaErrorExternalDevice", ExternalDevice, 911},
		{"cudaErrorStreamDetached", StreamDetached, 917},
		{"cudaErrorUnknown", Unknown, 999},
		{"cudaErrorApiFailureBase", ApiFailureBase, 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if int32(tt.code) != tt.want {
				t.Fatalf("value = %d, want %d", int32(tt.code), tt.want)
			}
			if got := tt.code.Name(); got != tt.name {
				t.Fatalf("Name() = %q, want %q", got, tt.name)
			}
		})
	}
}

func TestTableConsistent(t *testing.T) {
	names := make(map[string]Error, len(table))
	for code, ent := range table {
		if code == Success {
			if ent.name != "cudaSuccess" {
				t.Errorf("Success named %q", ent.name)
			}
		} else if !strings.HasPrefix(ent.name, "cudaError") {
			t.Errorf("%d: name %q lacks the cudaError prefix", code, ent.name)
		}
		if ent.desc == "" {
			t.Errorf("%s: empty description", ent.name)
		}
		if prev, dup := names[ent.name]; dup {
			t.Errorf("name %q used by %d and %d", ent.name, prev, code)
		}
		names[ent.name] = code
	}
	if len(table) < 130 {
		t.Errorf("table has %d entries; the CUDA 13 enum has more than 130", len(table))
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		name      string
		code      Error
		wantError string
		wantName  string
		wantDesc  string
		wantStr   string
		wantKnown bool
	}{
		{"invalid value", InvalidValue, "cudaErrorInvalidValue: invalid argument", "cudaErrorInvalidValue", "invalid argument", "cudaErrorInvalidValue", true},
		{"out of memory", MemoryAllocation, "cudaErrorMemoryAllocation: out of memory", "cudaErrorMemoryAllocation", "out of memory", "cudaErrorMemoryAllocation", true},
		{"illegal address", IllegalAddress, "cudaErrorIllegalAddress: an illegal memory access was encountered", "cudaErrorIllegalAddress", "an illegal memory access was encountered", "cudaErrorIllegalAddress", true},
		{"success", Success, "cudaSuccess: no error", "cudaSuccess", "no error", "cudaSuccess", true},
		{"gap in the enum", Error(11), "cudaError(11): unrecognized error code", "unrecognized error code", "unrecognized error code", "cudaError(11)", false},
		{"negative", Error(-3), "cudaError(-3): unrecognized error code", "unrecognized error code", "unrecognized error code", "cudaError(-3)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.code.Error(); got != tt.wantError {
				t.Errorf("Error() = %q, want %q", got, tt.wantError)
			}
			if got := tt.code.Name(); got != tt.wantName {
				t.Errorf("Name() = %q, want %q", got, tt.wantName)
			}
			if got := tt.code.Description(); got != tt.wantDesc {
				t.Errorf("Description() = %q, want %q", got, tt.wantDesc)
			}
			if got := tt.code.String(); got != tt.wantStr {
				t.Errorf("String() = %q, want %q", got, tt.wantStr)
			}
			if got := fmt.Sprint(tt.code); got != tt.wantError {
				// fmt prefers Error() over String() for an error value.
				t.Errorf("fmt.Sprint = %q, want %q", got, tt.wantError)
			}
			if got := tt.code.Known(); got != tt.wantKnown {
				t.Errorf("Known() = %v, want %v", got, tt.wantKnown)
			}
		})
	}
}

type otherErr struct{}

func (otherErr) Error() string { return "other" }

func TestCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Error
	}{
		{"nil", nil, Success},
		{"bare", InvalidValue, InvalidValue},
		{"wrapped once", fmt.Errorf("free: %w", InvalidValue), InvalidValue},
		{"wrapped twice", fmt.Errorf("worker: %w", fmt.Errorf("free: %w", NotReady)), NotReady},
		{"joined, first cuda error wins", errors.Join(otherErr{}, IllegalAddress, InvalidValue), IllegalAddress},
		{"foreign error", errors.New("boom"), Unknown},
		{"context error", context.Canceled, Unknown},
		{"wrapped success is not success", fmt.Errorf("odd: %w", Success), Unknown},
		{"unrecognized value kept", fmt.Errorf("x: %w", Error(4242)), Error(4242)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Code(tt.err); got != tt.want {
				t.Fatalf("Code() = %v, want %v", got, tt.want)
			}
			if !Is(tt.err, tt.want) {
				t.Fatalf("Is(err, %v) = false", tt.want)
			}
		})
	}
	if Is(fmt.Errorf("x: %w", InvalidValue), NotReady) {
		t.Fatal("Is matched the wrong code")
	}
	if !errors.Is(fmt.Errorf("x: %w", NotReady), NotReady) {
		t.Fatal("errors.Is does not see through wrapping")
	}
}

func TestSticky(t *testing.T) {
	tests := []struct {
		name string
		code Error
		want bool
	}{
		{"illegal address", IllegalAddress, true},
		{"launch failure", LaunchFailure, true},
		{"launch timeout", LaunchTimeout, true},
		{"assert", Assert, true},
		{"hardware stack", HardwareStackError, true},
		{"illegal instruction", IllegalInstruction, true},
		{"misaligned", MisalignedAddress, true},
		{"address space", InvalidAddressSpace, true},
		{"pc", InvalidPc, true},
		{"tensor memory leak", TensorMemoryLeak, true},
		{"contained", Contained, true},
		{"external device", ExternalDevice, true},
		{"mps client terminated", MpsClientTerminated, true},
		{"success", Success, false},
		{"invalid value", InvalidValue, false},
		{"out of memory", MemoryAllocation, false},
		{"not ready", NotReady, false},
		{"bad handle", InvalidResourceHandle, false},
		{"out of resources (synchronous)", LaunchOutOfResources, false},
		{"unknown", Unknown, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sticky(tt.code); got != tt.want {
				t.Fatalf("Sticky(%v) = %v, want %v", tt.code, got, tt.want)
			}
		})
	}
}

func ExampleCode() {
	err := fmt.Errorf("worker: free 0x1234: %w", InvalidValue)
	fmt.Println(Code(err), int32(Code(err)))
	fmt.Println(Code(nil))
	// Output:
	// cudaErrorInvalidValue: invalid argument 1
	// cudaSuccess: no error
}
