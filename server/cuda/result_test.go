package cuda

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/xgpu/xgpu/internal/cudaerr"
)

func TestResultTable(t *testing.T) {
	tests := []struct {
		name    string
		r       Result
		value   int32
		enum    string
		runtime cudaerr.Error
	}{
		{"success", Success, 0, "CUDA_SUCCESS", cudaerr.Success},
		{"invalid value", ErrInvalidValue, 1, "CUDA_ERROR_INVALID_VALUE", cudaerr.InvalidValue},
		{"out of memory", ErrOutOfMemory, 2, "CUDA_ERROR_OUT_OF_MEMORY", cudaerr.MemoryAllocation},
		{"not initialized", ErrNotInitialized, 3, "CUDA_ERROR_NOT_INITIALIZED", cudaerr.InitializationError},
		{"deinitialized", ErrDeinitialized, 4, "CUDA_ERROR_DEINITIALIZED", cudaerr.CudartUnloading},
		{"stub library", ErrStubLibrary, 34, "CUDA_ERROR_STUB_LIBRARY", cudaerr.StubLibrary},
		{"newer driver", ErrCallRequiresNewerDriver, 36, "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER", cudaerr.CallRequiresNewerDriver},
		{"device unavailable", ErrDeviceUnavailable, 46, "CUDA_ERROR_DEVICE_UNAVAILABLE", cudaerr.DevicesUnavailable},
		{"no device", ErrNoDevice, 100, "CUDA_ERROR_NO_DEVICE", cudaerr.NoDevice},
		{"invalid device", ErrInvalidDevice, 101, "CUDA_ERROR_INVALID_DEVICE", cudaerr.InvalidDevice},
		{"invalid image", ErrInvalidImage, 200, "CUDA_ERROR_INVALID_IMAGE", cudaerr.InvalidKernelImage},
		{"invalid context", ErrInvalidContext, 201, "CUDA_ERROR_INVALID_CONTEXT", cudaerr.DeviceUninitialized},
		{"context already current", ErrContextAlreadyCurrent, 202, "CUDA_ERROR_CONTEXT_ALREADY_CURRENT", cudaerr.Unknown},
		{"no binary", ErrNoBinaryForGPU, 209, "CUDA_ERROR_NO_BINARY_FOR_GPU", cudaerr.NoKernelImageForDevice},
		{"context in use", ErrContextAlreadyInUse, 216, "CUDA_ERROR_CONTEXT_ALREADY_IN_USE", cudaerr.DeviceAlreadyInUse},
		{"invalid PTX", ErrInvalidPTX, 218, "CUDA_ERROR_INVALID_PTX", cudaerr.InvalidPtx},
		{"contained", ErrContained, 226, "CUDA_ERROR_CONTAINED", cudaerr.Contained},
		{"invalid handle", ErrInvalidHandle, 400, "CUDA_ERROR_INVALID_HANDLE", cudaerr.InvalidResourceHandle},
		{"not found", ErrNotFound, 500, "CUDA_ERROR_NOT_FOUND", cudaerr.SymbolNotFound},
		{"not ready", ErrNotReady, 600, "CUDA_ERROR_NOT_READY", cudaerr.NotReady},
		{"illegal address", ErrIllegalAddress, 700, "CUDA_ERROR_ILLEGAL_ADDRESS", cudaerr.IllegalAddress},
		{"primary context active", ErrPrimaryContextActive, 708, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE", cudaerr.SetOnActiveProcess},
		{"launch failed", ErrLaunchFailed, 719, "CUDA_ERROR_LAUNCH_FAILED", cudaerr.LaunchFailure},
		{"tensor memory leak", ErrTensorMemoryLeak, 721, "CUDA_ERROR_TENSOR_MEMORY_LEAK", cudaerr.TensorMemoryLeak},
		{"not permitted", ErrNotPermitted, 800, "CUDA_ERROR_NOT_PERMITTED", cudaerr.NotPermitted},
		{"not supported", ErrNotSupported, 801, "CUDA_ERROR_NOT_SUPPORTED", cudaerr.NotSupported},
		{"timeout", ErrTimeout, 909, "CUDA_ERROR_TIMEOUT", cudaerr.Timeout},
		{"key rotation", ErrKeyRotation, 916, "CUDA_ERROR_KEY_ROTATION", cudaerr.Unknown},
		{"stream detached", ErrStreamDetached, 917, "CUDA_ERROR_STREAM_DETACHED", cudaerr.StreamDetached},
		{"unknown", ErrUnknown, 999, "CUDA_ERROR_UNKNOWN", cudaerr.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if int32(tt.r) != tt.value {
				t.Errorf("value = %d, want %d", int32(tt.r), tt.value)
			}
			if got := tt.r.Name(); got != tt.enum {
				t.Errorf("Name() = %q, want %q", got, tt.enum)
			}
			if got := tt.r.Runtime(); got != tt.runtime {
				t.Errorf("Runtime() = %v, want %v", got, tt.runtime)
			}
			want := fmt.Sprintf("cuda: %s (%d): ", tt.enum, tt.value)
			if got := tt.r.Error(); !strings.HasPrefix(got, want) || len(got) == len(want) {
				t.Errorf("Error() = %q, want %q and a description", got, want)
			}
			if !tt.r.Known() {
				t.Error("Known() = false")
			}
		})
	}
}

// TestResultTableComplete checks every entry: a unique CUDA_ name and a
// description, and a runtime code the runtime defines, equal in value to
// the driver's wherever the runtime has that value.
func TestResultTableComplete(t *testing.T) {
	names := map[string]Result{}
	for r, info := range results {
		if !strings.HasPrefix(info.name, "CUDA_") || info.desc == "" {
			t.Errorf("%d: incomplete entry %+v", r, info)
		}
		if o, dup := names[info.name]; dup {
			t.Errorf("%s names both %d and %d", info.name, o, r)
		}
		names[info.name] = r
		if !info.rt.Known() {
			t.Errorf("%s maps to %d, which the runtime does not define", info.name, info.rt)
		}
		if info.rt != cudaerr.Error(r) && info.rt != cudaerr.Unknown {
			t.Errorf("%s (%d) maps to runtime %d: the codes share their numbers", info.name, r, info.rt)
		}
		if info.rt == cudaerr.Unknown && r != ErrUnknown && cudaerr.Error(r).Known() {
			t.Errorf("%s (%d) maps to cudaErrorUnknown, but the runtime defines %v", info.name, r, cudaerr.Error(r))
		}
		if r.Sticky() != cudaerr.Sticky(info.rt) {
			t.Errorf("%s: Sticky() = %v, runtime's %v", info.name, r.Sticky(), cudaerr.Sticky(info.rt))
		}
	}
	if len(results) < 100 {
		t.Errorf("only %d CUresult values", len(results))
	}
}

func TestResultUnknownValue(t *testing.T) {
	tests := []struct {
		name string
		r    Result
	}{
		{"gap", 9},
		{"negative", -3},
		{"large", 123456},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.r.Known() {
				t.Fatal("Known() = true")
			}
			if got, want := tt.r.Name(), fmt.Sprintf("CUresult(%d)", int32(tt.r)); got != want {
				t.Errorf("Name() = %q, want %q", got, want)
			}
			if got := tt.r.Description(); got != "unrecognized error code" {
				t.Errorf("Description() = %q", got)
			}
			if got := tt.r.Runtime(); got != cudaerr.Unknown {
				t.Errorf("Runtime() = %v, want cudaErrorUnknown", got)
			}
		})
	}
}

func TestResultAsRuntimeError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want cudaerr.Error
	}{
		{"bare", ErrOutOfMemory, cudaerr.MemoryAllocation},
		{"wrapped", fmt.Errorf("worker: malloc: %w", ErrOutOfMemory), cudaerr.MemoryAllocation},
		{"renamed", fmt.Errorf("x: %w", ErrNotFound), cudaerr.SymbolNotFound},
		{"argument error", badArg("Op", "bad"), cudaerr.InvalidValue},
		{"nil", nil, cudaerr.Success},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cudaerr.Code(tt.err); got != tt.want {
				t.Errorf("cudaerr.Code = %v, want %v", got, tt.want)
			}
			if tt.err != nil && !errors.Is(tt.err, tt.want) {
				t.Errorf("errors.Is(err, %v) = false", tt.want)
			}
		})
	}
	if errors.Is(ErrOutOfMemory, cudaerr.InvalidValue) {
		t.Error("ErrOutOfMemory matches cudaErrorInvalidValue")
	}
	if !errors.Is(fmt.Errorf("w: %w", ErrOutOfMemory), ErrOutOfMemory) {
		t.Error("a wrapped Result does not match itself")
	}
	var e cudaerr.Error
	if Success.As(&e) || Success.Is(cudaerr.Success) {
		t.Error("Success converts to a runtime error")
	}
}

func TestCheck(t *testing.T) {
	if err := check(Success); err != nil {
		t.Fatalf("check(Success) = %v", err)
	}
	if err := check(ErrNotReady); !errors.Is(err, ErrNotReady) {
		t.Fatalf("check(ErrNotReady) = %v", err)
	}
}
