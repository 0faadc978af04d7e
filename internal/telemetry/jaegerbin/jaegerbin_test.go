package jaegerbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "jaeger")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, envBin, envCache string
		want                   string
		wantErr                string
	}{
		{"explicit binary", bin, "", bin, ""},
		{"explicit but not executable", notExec, "", "", "not an executable file"},
		{"explicit but missing", filepath.Join(dir, "none"), "", "", "no such file"},
		{"from the cache", "", dir, bin, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvBin, tt.envBin)
			t.Setenv(EnvCache, tt.envCache)
			got, _, err := Find()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Find() error = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Find() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestConfigPorts(t *testing.T) {
	c := string(Config(1001, 1002, 1003, 1004))
	for _, want := range []string{"127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003", "127.0.0.1:1004"} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %s:\n%s", want, c)
		}
	}
	if strings.Contains(c, "%!") {
		t.Errorf("config has a formatting error:\n%s", c)
	}
}
