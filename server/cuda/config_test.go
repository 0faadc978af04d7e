package cuda

import (
	"testing"

	"github.com/xgpu/xgpu/server/backend"
)

func TestNVMLBusID(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"cuda form", "0000:19:00.0", "00000000:19:00.0"},
		{"lower case hex", "0000:3b:1f.7", "00000000:3B:1F.7"},
		{"nvml form", "00000000:3B:00.0", "00000000:3B:00.0"},
		{"domain", "0001:c1:00.1", "00000001:C1:00.1"},
		{"garbage", "not a bus id", "not a bus id"},
		{"missing function", "0000:19:00", "0000:19:00"},
		{"bad hex", "0000:zz:00.0", "0000:zz:00.0"},
		{"bus too wide", "0000:100:00.0", "0000:100:00.0"},
		{"empty field", "0000::00.0", "0000::00.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nvmlBusID(tt.in); got != tt.want {
				t.Errorf("nvmlBusID(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestUUIDString(t *testing.T) {
	u := UUID{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	if got, want := u.String(), "GPU-12345678-9abc-def0-0123-456789abcdef"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"zero", Config{}, false},
		{"links", Config{Links: map[string][]backend.PeerInfo{"GPU-a": {{UUID: "GPU-b", NVLinks: 18}, {UUID: "GPU-c", PCIePath: "PIX"}}}}, false},
		{"NUL in library", Config{Library: "lib\x00cuda"}, true},
		{"negative queue", Config{QueueLength: -1}, true},
		{"self link", Config{Links: map[string][]backend.PeerInfo{"GPU-a": {{UUID: "GPU-a", NVLinks: 1}}}}, true},
		{"peer without UUID", Config{Links: map[string][]backend.PeerInfo{"GPU-a": {{NVLinks: 1}}}}, true},
		{"peer without link", Config{Links: map[string][]backend.PeerInfo{"GPU-a": {{UUID: "GPU-b"}}}}, true},
		{"negative links", Config{Links: map[string][]backend.PeerInfo{"GPU-a": {{UUID: "GPU-b", NVLinks: -1, PCIePath: "SYS"}}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
