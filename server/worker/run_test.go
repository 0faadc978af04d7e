package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/server/host"
	"github.com/xgpu/xgpu/server/worker/workertest"
)

func TestConfigValidate(t *testing.T) {
	ok := testConfig(devCfg(0, 0), devCfg(1, 1))
	tests := []struct {
		name string
		edit func(c *Config)
		want string // "" for valid
	}{
		{name: "valid", edit: func(c *Config) {}},
		{name: "no session id", edit: func(c *Config) { c.SessionID = "" }, want: "session_id"},
		{name: "short token", edit: func(c *Config) { c.Token = "abc" }, want: "token"},
		{name: "token with separator", edit: func(c *Config) { c.Token = strings.Repeat("a", 20) + "|" }, want: "'|'"},
		{name: "no devices", edit: func(c *Config) { c.Devices = nil }, want: "no devices"},
		{name: "unknown backend", edit: func(c *Config) { c.Backend = "opencl" }, want: "opencl"},
		{name: "ca without dir", edit: func(c *Config) { c.TLS.Mode = TLSCA }, want: "dir and name"},
		{name: "bad log level", edit: func(c *Config) { c.LogLevel = "loud" }, want: "loud"},
		{name: "duplicate logical", edit: func(c *Config) { c.Devices[1].Logical = 0 }, want: "twice"},
		{name: "overlapping windows", edit: func(c *Config) { c.Devices[1].WindowBase = c.Devices[0].WindowBase }, want: "overlap"},
		{name: "misaligned window", edit: func(c *Config) { c.Devices[0].WindowBase += 4096 }, want: "multiple"},
		{name: "logical index too large", edit: func(c *Config) { c.Devices[0].Logical = MaxLogicalIndex + 1 }, want: "exceeds"},
		{name: "bad host config", edit: func(c *Config) { c.Host = &host.Config{Devices: -1} }, want: "devices"},
		{name: "bad transport", edit: func(c *Config) { c.Transport.BulkLanes = 1000 }, want: "BulkLanes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			c.Devices = append([]DeviceConfig(nil), ok.Devices...)
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate = %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestOpenBackendUnknownKind(t *testing.T) {
	_, err := OpenBackend(Config{Backend: BackendCUDA})
	if err == nil || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("OpenBackend(cuda) = %v, want not available (nothing registered it)", err)
	}
}

func TestNewRejectsWrongGPU(t *testing.T) {
	d := devCfg(0, 0)
	d.GPUUUID = "GPU-00000000-0000-0000-0000-000000000000"
	if _, err := New(testConfig(d), newHost(t, 1)); err == nil || !strings.Contains(err.Error(), "has no GPU") {
		t.Fatalf("New = %v, want a missing-GPU error", err)
	}
}

// TestMain runs the process entry point in-process: config on stdin, the
// Ready line on stdout, a session, CloseSession.
func TestMainEntryPoint(t *testing.T) {
	cfg := testConfig(devCfg(0, 0))
	cfg.Host = &host.Config{Devices: 1, Memory: 1 << 30, HostID: "main-test"}
	line, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Main(context.Background(), stdinR, stdoutW, io.Discard) }()
	go func() { _, _ = stdinW.Write(append(line, '\n')) }()
	br := bufio.NewReader(stdoutR)
	s, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var ready Ready
	if err := json.Unmarshal([]byte(s), &ready); err != nil || !strings.HasPrefix(ready.Address, "127.0.0.1:") || len(ready.CertSHA256) != 64 {
		t.Fatalf("Ready line %q: %+v, %v", s, ready, err)
	}
	go func() { _, _ = io.Copy(io.Discard, br) }()
	tr := testTransport
	c, err := workertest.Dial(testCtx(t), ready.Address, pinned(t, ready.CertSHA256), &tr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello(testCtx(t), testToken); err != nil {
		t.Fatal(err)
	}
	mustMalloc(t, c, 0, 1<<20)
	if _, err := c.Call(testCtx(t), calls.OpCloseSession, calls.Call{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Main = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after CloseSession")
	}
	stdinW.Close() // ends Main's stdin watcher
	stdoutW.Close()
}

func TestMainBadConfig(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "empty input", in: "", want: "read config"},
		{name: "not json", in: "hello\n", want: "parse config"},
		{name: "unknown field", in: `{"session_id":"s","bogus":1}` + "\n", want: "bogus"},
		{name: "invalid", in: `{"session_id":"s"}` + "\n", want: "token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Main(context.Background(), strings.NewReader(tt.in), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Main = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestQuotaCappedAtDeviceMemory: a vGPU sized from NVML's total (more
// than the driver lets a context use) opens with the device's memory as
// its quota.
func TestQuotaCappedAtDeviceMemory(t *testing.T) {
	b, err := host.New(host.Config{Devices: 1, Memory: 256 << 20, HostID: "cap"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	d := devCfg(0, 0)
	d.Quota = 300 << 20
	r := start(t, testConfig(d), b)
	c := dial(t, r, testToken)
	rep, err := c.Call(testCtx(t), calls.OpMemGetInfo, calls.Call{Dev: 0})
	if err != nil || rep.V2 != 256<<20 {
		t.Fatalf("MemGetInfo total = %d, %v; want the device's %d", rep.V2, err, 256<<20)
	}
}
