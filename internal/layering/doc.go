// Package layering holds no code: its test checks the import rules between
// xgpu's packages (which may import "C", which layers may import which), so
// that a change that crosses a layer fails `make lint` and `make test`.
package layering
