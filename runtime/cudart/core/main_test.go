package core

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/server/servertest"
)

func TestMain(m *testing.M) {
	// The in-process workers log through the default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	goleak.VerifyTestMain(m)
}

const testMemory = 1 << 30

// startServer serves n emulated devices (host backend, NVLink between
// them) from this process and returns the device map of all of them.
func startServer(t *testing.T, n int) *devicemap.Map {
	t.Helper()
	return servertest.StartHost(t, "core-test", n, testMemory)
}

// newShim returns a Shim over a fresh two-device server, closed at the
// end of the test.
func newShim(t *testing.T) *Shim {
	t.Helper()
	m := startServer(t, 2)
	s := New(func() (Config, error) { return Config{Map: m, Runtime: runtimeConfig()}, nil })
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func writeMap(t *testing.T, m *devicemap.Map) string {
	t.Helper()
	data, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "map.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newTestLogger logs text lines into w.
func newTestLogger(w *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(&lockedWriter{w: w}, nil))
}

// lockedWriter serializes writes to a buffer shared with the test.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
