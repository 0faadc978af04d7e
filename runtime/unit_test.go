package runtime

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xgpu/xgpu/devicemap"
	"github.com/xgpu/xgpu/internal/certs"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/peers"
)

func TestAllocTable(t *testing.T) {
	var tab allocTable
	for _, a := range []struct{ p, n uint64 }{{0x1000, 0x100}, {0x3000, 0x1000}, {0x2000, 0x800}} {
		if !tab.add(a.p, a.n) {
			t.Fatalf("add(%#x, %#x) refused", a.p, a.n)
		}
	}
	tests := []struct {
		name     string
		p, n     uint64
		contains bool
		base     uint64
		found    bool
	}{
		{"start of first", 0x1000, 1, true, 0x1000, true},
		{"whole first", 0x1000, 0x100, true, 0x1000, true},
		{"past first", 0x1000, 0x101, false, 0x1000, true},
		{"end of first", 0x10ff, 1, true, 0x1000, true},
		{"just after first", 0x1100, 1, false, 0, false},
		{"before all", 0xfff, 1, false, 0, false},
		{"middle", 0x2400, 0x400, true, 0x2000, true},
		{"spans two", 0x27ff, 0x900, false, 0x2000, true},
		{"last", 0x3fff, 1, true, 0x3000, true},
		{"after last", 0x4000, 1, false, 0, false},
		{"wraps", 0x3000, ^uint64(0), false, 0x3000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tab.contains(tt.p, tt.n); got != tt.contains {
				t.Errorf("contains(%#x, %#x) = %v, want %v", tt.p, tt.n, got, tt.contains)
			}
			base, _, ok := tab.find(tt.p)
			if ok != tt.found || base != tt.base {
				t.Errorf("find(%#x) = %#x, %v; want %#x, %v", tt.p, base, ok, tt.base, tt.found)
			}
		})
	}
	t.Run("overlap refused", func(t *testing.T) {
		for _, a := range []struct{ p, n uint64 }{{0x1080, 0x10}, {0xf00, 0x101}, {0x2700, 0x1000}} {
			if tab.add(a.p, a.n) {
				t.Errorf("add(%#x, %#x) accepted an overlap", a.p, a.n)
			}
		}
		if n, b := tab.stats(); n != 3 || b != 0x1900 {
			t.Errorf("stats = %d, %#x; want 3, 0x1900", n, b)
		}
	})
	t.Run("remove", func(t *testing.T) {
		if _, ok := tab.remove(0x2001); ok {
			t.Error("removed by an interior pointer")
		}
		if size, ok := tab.remove(0x2000); !ok || size != 0x800 {
			t.Errorf("remove = %#x, %v", size, ok)
		}
		if _, ok := tab.remove(0x2000); ok {
			t.Error("removed twice")
		}
		if tab.contains(0x2000, 1) {
			t.Error("freed range still contained")
		}
	})
}

func testMap(t *testing.T, servers, perServer int) *devicemap.Map {
	t.Helper()
	var devs []devicemap.Device
	for s := range servers {
		for g := range perServer {
			devs = append(devs, devicemap.Device{
				Host: fmt.Sprintf("h%d", s), Server: fmt.Sprintf("s%d", s), Address: fmt.Sprintf("127.0.0.1:%d", 7000+s),
				GPUUUID: fmt.Sprintf("GPU-00000000-0000-0000-0000-%012d", s*100+g), GPUIndex: g,
				MemoryQuota: 1 << 30, Properties: devicemap.Properties{Name: "test", TotalMemory: 1 << 30},
			})
		}
	}
	m, err := devicemap.New(devs, devicemap.KeepOrder())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestConfigValidate(t *testing.T) {
	m := testMap(t, 1, 1)
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; empty: valid
	}{
		{"minimal", Config{Map: m}, ""},
		{"no map", Config{}, "Map is required"},
		{"empty map", Config{Map: &devicemap.Map{Version: devicemap.Version, Base: devicemap.DefaultBase, Window: devicemap.MinWindow}}, "Map"},
		{"negative dial timeout", Config{Map: m, DialTimeout: -1}, "DialTimeout"},
		{"negative close timeout", Config{Map: m, CloseTimeout: -1}, "CloseTimeout"},
		{"small chunk", Config{Map: m, ChunkSize: 1024}, "ChunkSize"},
		{"huge chunk", Config{Map: m, ChunkSize: MaxChunkSize + 1}, "ChunkSize"},
		{"negative inflight", Config{Map: m, MaxInflight: -1}, "MaxInflight"},
		{"long flush delay", Config{Map: m, FlushDelay: time.Second}, "FlushDelay"},
		{"negative flush delay", Config{Map: m, FlushDelay: -1}, "FlushDelay"},
		{"bad transport", Config{Map: m, Transport: &peers.Config{BulkLanes: 1000}}, "Transport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				d := tt.cfg.withDefaults()
				if d.ChunkSize == 0 || d.MaxInflight == 0 || d.DialTimeout == 0 || d.Logger == nil || d.Client == "" || d.GRPCDialOptions == nil {
					t.Errorf("withDefaults left zero fields: %+v", d)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "runtime: ") {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	transport := errors.New("idle timeout")
	lost := &LostError{Server: "s:1", Addr: "w:2", Err: transport}
	tests := []struct {
		name string
		err  error
		code cudaerr.Error
		is   error
		msg  string
	}{
		{"status", opErr("cudaMalloc", 3, cudaerr.MemoryAllocation), cudaerr.MemoryAllocation, cudaerr.MemoryAllocation, "runtime: cudaMalloc on device 3: cudaErrorMemoryAllocation"},
		{"invalid with reason", opErr("cudaFree", -1, invalid("%#x is odd", 7)), cudaerr.InvalidValue, cudaerr.InvalidValue, "runtime: cudaFree: cudaErrorInvalidValue: invalid argument (0x7 is odd)"},
		{"lost", opErr("cudaMemcpy", 1, lost), cudaerr.DevicesUnavailable, transport, "session with worker w:2 (server s:1) lost: idle timeout"},
		{"closed", opErr("cudaMalloc", 0, ErrClosed), cudaerr.CudartUnloading, ErrClosed, "client closed"},
		{"bad device", opErr("cudaMalloc", 9, errDevice(9, 4)), cudaerr.InvalidDevice, cudaerr.InvalidDevice, "device 9 outside 0..3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cudaerr.Code(tt.err); got != tt.code {
				t.Errorf("Code = %v, want %v", got, tt.code)
			}
			if !errors.Is(tt.err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", tt.err, tt.is)
			}
			if !strings.Contains(tt.err.Error(), tt.msg) {
				t.Errorf("message %q lacks %q", tt.err.Error(), tt.msg)
			}
			var re *Error
			if !errors.As(tt.err, &re) || re.Op == "" {
				t.Errorf("not a *runtime.Error: %v", tt.err)
			}
		})
	}
	if opErr("x", 0, nil) != nil {
		t.Error("opErr(nil) is not nil")
	}
}

func TestWorkerTLS(t *testing.T) {
	srv, cli, err := certs.DevConfig()
	if err != nil {
		t.Fatal(err)
	}
	leaf := srv.Certificates[0].Certificate[0]
	pin := sha256.Sum256(leaf)
	other := sha256.Sum256([]byte("another certificate"))
	cert, err := x509.ParseCertificate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	state := tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, NegotiatedProtocol: peers.ALPN}
	tests := []struct {
		name     string
		base     *tls.Config
		pin      []byte
		buildErr bool
		verifyOK bool
	}{
		{"dev pin matches", nil, pin[:], false, true},
		{"dev pin differs", nil, other[:], false, false},
		{"dev without pin", nil, nil, true, false},
		{"short pin", nil, pin[:5], true, false},
		{"ca with pin", cli, pin[:], false, true},
		{"ca with wrong pin", cli, other[:], false, false},
		{"ca without pin", cli, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := workerTLS(tt.base, tt.pin)
			if tt.buildErr {
				if err == nil {
					t.Fatal("workerTLS accepted a bad pin setup")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if conf.MinVersion != tls.VersionTLS13 || len(conf.NextProtos) == 0 || conf.NextProtos[0] != peers.ALPN {
				t.Errorf("config not TLS 1.3 with ALPN: %v %v", conf.MinVersion, conf.NextProtos)
			}
			if tt.base == nil && !conf.InsecureSkipVerify {
				t.Error("dev config verifies a chain it cannot have")
			}
			if tt.base != nil && conf.InsecureSkipVerify {
				t.Error("CA config skips chain verification")
			}
			ok := conf.VerifyConnection == nil || conf.VerifyConnection(state) == nil
			if ok != tt.verifyOK {
				t.Errorf("verify = %v, want %v", ok, tt.verifyOK)
			}
		})
	}
}
