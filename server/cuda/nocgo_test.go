//go:build !cgo

package cuda

import (
	"errors"
	"testing"
)

func TestWithoutCgo(t *testing.T) {
	if _, err := Open(""); !errors.Is(err, ErrNoCgo) {
		t.Errorf("Open = %v, want ErrNoCgo", err)
	}
	if _, err := New(Config{}); !errors.Is(err, ErrNoCgo) {
		t.Errorf("New = %v, want ErrNoCgo", err)
	}
}
