package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCurrent fails when the checked-in generated files differ
// from what the generator makes now: run `make generate`.
func TestGeneratedCurrent(t *testing.T) {
	for _, tt := range []struct{ name, dir string }{{"cudart", "facade"}, {"cuda", "driver"}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join("..", tt.dir)
			files, err := generate(dir, libraries[tt.name])
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range files {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatalf("%v (run make generate)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s/%s is stale: run make generate", tt.dir, name)
				}
			}
		})
	}
}

func TestGenerateRejects(t *testing.T) {
	tests := []struct {
		name  string
		lib   string
		names string
		src   string
		want  string
	}{
		{"unsorted", "cudart", "cudaMalloc\ncudaFree\n", "", "not sorted"},
		{"error functions not listed", "cudart", "cudaFree\n", "", "cudaGetErrorName"},
		{"duplicate", "cudart", "cudaFree\ncudaFree\n", "", "twice"},
		{"bad return type", "cudart", "cudaFree int\n", "", "optionally"},
		{"version out of range", "cuda", "cuGetErrorName\ncuGetErrorString\ncuInit_v2 99\n", "", "CUDA version"},
		{"three fields", "cuda", "cuGetErrorName\ncuGetErrorString\ncuInit_v2 3020 x\n", "", "CUDA version"},
		{"version in the runtime's names", "cudart", "cudaFree_v2 3020\ncudaGetErrorName\ncudaGetErrorString\n", "", "do not take"},
		{"not an identifier", "cudart", "cuda-Free\n", "", "identifier"},
		{"served name not exported", "cudart", "cudaFree\ncudaGetErrorName\ncudaGetErrorString\n", "XGPU_EXPORT cudaError_t cudaBogus(void) { return 0; }\n", "cudaBogus"},
		{"driver name not exported", "cuda", "cuGetErrorName\ncuGetErrorString\n", "XGPU_EXPORT CUresult cuBogus(void) { return 0; }\n", "libcuda.so.1 does not export"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			lib := libraries[tt.lib]
			if err := os.WriteFile(filepath.Join(dir, lib.names), []byte(tt.names), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "a.c"), []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := generate(dir, lib)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("generate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestGenerateStubs(t *testing.T) {
	dir := t.TempDir()
	names := "# comment\n__cudaRegisterManagedVar void\ncudaFree\ncudaGetErrorName\ncudaGetErrorString\ncudaMalloc\n"
	src := "XGPU_EXPORT cudaError_t cudaMalloc(void **p, size_t n) {\n  return 0;\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "cudart.names"), []byte(names), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "facade.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := generate(dir, libraries["cudart"])
	if err != nil {
		t.Fatal(err)
	}
	stubs := string(files["zz_generated_stubs.c"])
	for _, want := range []string{
		`XGPU_EXPORT void __cudaRegisterManagedVar(void) { (void)facade_unsupported("__cudaRegisterManagedVar"); }`,
		`XGPU_EXPORT cudaError_t cudaFree(void) { return facade_unsupported("cudaFree"); }`,
		"3 names served, 2 stubs",
	} {
		if !strings.Contains(stubs, want) {
			t.Errorf("stubs lack %q:\n%s", want, stubs)
		}
	}
	if strings.Contains(stubs, " cudaMalloc(") {
		t.Errorf("served cudaMalloc got a stub")
	}
	vs := string(files["zz_generated_libcudart.map"])
	for _, want := range []string{"libcudart.so.13 {", "    cudaMalloc;", "    __cudaRegisterManagedVar;", "local:\n    *;"} {
		if !strings.Contains(vs, want) {
			t.Errorf("version script lacks %q:\n%s", want, vs)
		}
	}
	errC := string(files["zz_generated_errors.c"])
	for _, want := range []string{`case 1: return "cudaErrorInvalidValue";`, `case 700: /* cudaErrorIllegalAddress */`} {
		if !strings.Contains(errC, want) {
			t.Errorf("errors lack %q", want)
		}
	}
}

func TestGenerateDriver(t *testing.T) {
	dir := t.TempDir()
	names := "cuCtxCreate\ncuCtxCreate_v2 3020\ncuGetErrorName\ncuGetErrorString\ncuInit\ncuLaunchKernel_ptsz\n"
	src := "XGPU_EXPORT CUresult cuInit(unsigned flags) {\n  return 0;\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "cuda.names"), []byte(names), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "driver.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := generate(dir, libraries["cuda"])
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file string
		want       []string
		not        []string
	}{
		{"stubs", "zz_generated_stubs.c", []string{
			`#include "driver.h"`,
			`XGPU_EXPORT CUresult cuCtxCreate_v2(void) { return drv_unsupported("cuCtxCreate_v2"); }`,
			`XGPU_EXPORT CUresult cuLaunchKernel_ptsz(void) { return drv_unsupported("cuLaunchKernel_ptsz"); }`,
			"3 names served, 3 stubs",
		}, []string{" cuInit(", " cuGetErrorName("}},
		{"unversioned map", "zz_generated_libcuda.map", []string{"{\n  global:\n    cuCtxCreate;", "    cuInit;", "local:\n    *;"},
			[]string{"libcuda.so.1 {"}},
		{"versions", "zz_generated_versions.c", []string{`{"cuCtxCreate_v2", 3020},`, "drv_nversioned = 1;"},
			[]string{`"cuCtxCreate",`}},
		{"errors", "zz_generated_errors.c", []string{
			`case 801: *s = "CUDA_ERROR_NOT_SUPPORTED"; return CUDA_SUCCESS;`,
			`case 1: *s = "invalid argument"; return CUDA_SUCCESS;`,
			`case 202: *s = "context already current"; return CUDA_SUCCESS;`,
		}, nil},
		{"enum", "zz_generated_errors.h", []string{"CUDA_ERROR_NOT_FOUND = 500,", "CUDA_ERROR_UNKNOWN = 999,"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(files[tt.file])
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("%s lacks %q:\n%s", tt.file, w, got)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(got, w) {
					t.Errorf("%s has %q", tt.file, w)
				}
			}
		})
	}
}

// TestCUresultDescriptions checks that every CUresult has a description,
// its own or the runtime's.
func TestCUresultDescriptions(t *testing.T) {
	seen := map[int32]bool{}
	for _, r := range curesults {
		if seen[r.value] {
			t.Errorf("%s: value %d listed twice", r.name, r.value)
		}
		seen[r.value] = true
		if d := r.description(); d == "" || d == "unrecognized error code" {
			t.Errorf("%s (%d) has no description", r.name, r.value)
		}
	}
}
