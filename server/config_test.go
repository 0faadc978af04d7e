package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{Backend: BackendHost, Source: StaticGPUs{testGPU(0, "GPU-a", gib)}}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr []string // each must appear; none means valid
	}{
		{name: "minimal", edit: func(*Config) {}},
		{name: "cuda with everything set", edit: func(c *Config) {
			c.Backend = BackendCUDA
			c.ID, c.Host, c.Advertise = "gpu1", "gpu1.lan", "gpu1.lan:7200"
			c.VGPUsPerGPU, c.VGPUMemory = MaxVGPUsPerGPU, 2*mib
			c.Aggregator, c.HeartbeatInterval = "[::1]:7100", time.Second
		}},
		{name: "missing backend and source", edit: func(c *Config) { c.Backend, c.Source = "", nil },
			wantErr: []string{"server: config: Backend: required", "server: config: Source: required"}},
		{name: "unknown backend", edit: func(c *Config) { c.Backend = "rocm" }, wantErr: []string{`Backend: "rocm" is neither`}},
		{name: "negative vGPUs", edit: func(c *Config) { c.VGPUsPerGPU = -1 }, wantErr: []string{"VGPUsPerGPU: -1 is outside 0..100"}},
		{name: "too many vGPUs", edit: func(c *Config) { c.VGPUsPerGPU = 101 }, wantErr: []string{"VGPUsPerGPU: 101"}},
		{name: "negative heartbeat", edit: func(c *Config) { c.HeartbeatInterval = -time.Second }, wantErr: []string{"HeartbeatInterval: -1s is negative"}},
		{name: "aggregator without port", edit: func(c *Config) { c.Aggregator = "agg.lan" }, wantErr: []string{`Aggregator: "agg.lan" is not host:port`}},
		{name: "aggregator without host", edit: func(c *Config) { c.Aggregator = ":7100" }, wantErr: []string{`Aggregator: ":7100" has no host`}},
		{name: "aggregator with bad port", edit: func(c *Config) { c.Aggregator = "agg:http" }, wantErr: []string{`has no valid port`}},
		{name: "advertise with port zero", edit: func(c *Config) { c.Advertise = "gpu1:0" }, wantErr: []string{`Advertise: "gpu1:0" has no valid port`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c)
			before := c
			err := c.Validate()
			if c.Backend != before.Backend || c.Host != before.Host || c.VGPUsPerGPU != before.VGPUsPerGPU {
				t.Errorf("Validate changed the config")
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestConfigAddresses(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	tests := []struct {
		name          string
		id, advertise string
		addr          net.Addr
		wantID        string
		wantAdvertise string
	}{
		{name: "loopback listener", addr: tcp("127.0.0.1:7200"), wantID: "gpu1:7200", wantAdvertise: "127.0.0.1:7200"},
		{name: "wildcard listener", addr: tcp("0.0.0.0:7200"), wantID: "gpu1:7200", wantAdvertise: "gpu1:7200"},
		{name: "IPv6 wildcard listener", addr: tcp("[::]:7201"), wantID: "gpu1:7201", wantAdvertise: "gpu1:7201"},
		{name: "IPv6 listener", addr: tcp("[::1]:7201"), wantID: "gpu1:7201", wantAdvertise: "[::1]:7201"},
		{name: "configured", id: "rack3-gpu1", advertise: "10.0.0.5:9000", addr: tcp("0.0.0.0:7200"), wantID: "rack3-gpu1", wantAdvertise: "10.0.0.5:9000"},
		{name: "unix listener", addr: &net.UnixAddr{Name: "/run/xgpu.sock", Net: "unix"}, wantID: "gpu1", wantAdvertise: "/run/xgpu.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{ID: tt.id, Host: "gpu1", Advertise: tt.advertise}
			id, adv := c.addresses(tt.addr)
			if id != tt.wantID || adv != tt.wantAdvertise {
				t.Errorf("addresses(%v) = %q, %q; want %q, %q", tt.addr, id, adv, tt.wantID, tt.wantAdvertise)
			}
		})
	}
}

func TestConfigModuleCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/var/cache/test")
	base := validConfig()
	base.Host = "h"
	tests := []struct {
		name    string
		dir     string
		disable bool
		want    string
	}{
		{name: "default", want: "/var/cache/test/xgpu/modules"},
		{name: "absolute", dir: "/srv/xgpu/modules", want: "/srv/xgpu/modules"},
		{name: "relative made absolute", dir: "mods", want: filepath.Join(mustGetwd(t), "mods")},
		{name: "off", dir: "/srv/xgpu/modules", disable: true, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.ModuleCacheDir, c.NoModuleCache = tt.dir, tt.disable
			got, err := c.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			if got.ModuleCacheDir != tt.want {
				t.Fatalf("ModuleCacheDir = %q, want %q", got.ModuleCacheDir, tt.want)
			}
		})
	}
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
