//go:build !cgo

package nvml

import (
	"context"
	"errors"
	"testing"
)

func TestGPUsWithoutCgo(t *testing.T) {
	_, err := (&Source{}).GPUs(context.Background())
	if !errors.Is(err, ErrNoCgo) || !errors.Is(err, ErrUnavailable) || err.Error() != "nvml: built without cgo" {
		t.Fatalf("GPUs() error = %v, want ErrNoCgo matching ErrUnavailable", err)
	}
}
