package main

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr bool
	}{
		{"bytes", "4096", 4096, false},
		{"GiB", "16GiB", 16 << 30, false},
		{"lower gib", "16gib", 16 << 30, false},
		{"GB decimal", "16GB", 16e9, false},
		{"bare G binary", "2G", 2 << 30, false},
		{"fraction", "1.5GiB", 3 << 29, false},
		{"MiB with space", "512 MiB", 512 << 20, false},
		{"B suffix", "100B", 100, false},
		{"empty", "", 0, true},
		{"unit only", "GiB", 0, true},
		{"negative", "-1GiB", 0, true},
		{"garbage", "lots", 0, true},
		{"nan", "NaN", 0, true},
		{"huge", "1e30TiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSize(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   uint64
		want string
	}{
		{16 << 30, "16GiB"}, {3 << 29, "1.5GiB"}, {512 << 20, "512MiB"}, {100, "100B"}, {2 << 40, "2TiB"},
	}
	for _, tt := range tests {
		if got := formatSize(tt.in); got != tt.want {
			t.Errorf("formatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
