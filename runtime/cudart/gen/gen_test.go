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
	files, err := generate("../facade")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("../facade", name))
		if err != nil {
			t.Fatalf("%v (run make generate)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("facade/%s is stale: run make generate", name)
		}
	}
}

func TestGenerateRejects(t *testing.T) {
	tests := []struct {
		name  string
		names string
		src   string
		want  string
	}{
		{"unsorted", "cudaMalloc\ncudaFree\n", "", "not sorted"},
		{"error functions not listed", "cudaFree\n", "", "cudaGetErrorName"},
		{"duplicate", "cudaFree\ncudaFree\n", "", "twice"},
		{"bad return type", "cudaFree int\n", "", "optionally"},
		{"not an identifier", "cuda-Free\n", "", "identifier"},
		{"served name not exported", "cudaFree\ncudaGetErrorName\ncudaGetErrorString\n", "XGPU_EXPORT cudaError_t cudaBogus(void) { return 0; }\n", "cudaBogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "cudart.names"), []byte(tt.names), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "a.c"), []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := generate(dir)
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
	files, err := generate(dir)
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
