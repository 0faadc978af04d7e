package devicemap

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// goodJSON returns the encoded two-host map.
func goodJSON(t *testing.T) []byte {
	t.Helper()
	data, err := twoHostMap(t).Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return data
}

// mutate decodes the good map into generic JSON, applies f and re-encodes.
func mutate(t *testing.T, f func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(goodJSON(t), &doc); err != nil {
		t.Fatal(err)
	}
	f(doc)
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func devAt(doc map[string]any, i int) map[string]any {
	return doc["devices"].([]any)[i].(map[string]any)
}

func TestParse(t *testing.T) {
	good := goodJSON(t)
	type want struct {
		dev   int    // ParseError.Device
		field string // ParseError.Field
		text  string // substring of the message
	}
	tests := []struct {
		name string
		data []byte
		ok   bool
		want want
	}{
		{name: "good", data: good, ok: true},
		{name: "good, compact", data: mutate(t, func(map[string]any) {}), ok: true},
		{name: "base and window absent get defaults", data: mutate(t, func(d map[string]any) { delete(d, "base"); delete(d, "window") }), ok: true},
		{name: "no devices", data: []byte(`{"version":1,"devices":[]}`), ok: true},
		{name: "optional fields absent", data: mutate(t, func(d map[string]any) {
			delete(d, "net")
			delete(d, "leaseId")
			for i := range 5 {
				delete(devAt(d, i), "peers")
				delete(devAt(d, i), "properties")
			}
		}), ok: true},

		{name: "empty", data: nil, want: want{-1, "", "empty document"}},
		{name: "whitespace", data: []byte("  \n"), want: want{-1, "", "empty document"}},
		{name: "truncated", data: good[:len(good)/2], want: want{-1, "", "truncated JSON"}},
		{name: "truncated after brace", data: []byte(`{`), want: want{-1, "", "truncated JSON"}},
		{name: "syntax", data: []byte(`{"version":1,}`), want: want{-1, "", "invalid JSON at byte"}},
		{name: "not an object", data: []byte(`[1,2]`), want: want{-1, "", "where an object is expected"}},
		{name: "null", data: []byte(`null`), want: want{-1, "version", "missing"}},
		{name: "trailing data", data: append(bytes.Clone(good), []byte(`{}`)...), want: want{-1, "", "trailing data"}},
		{name: "unknown field", data: mutate(t, func(d map[string]any) { d["extra"] = 1 }), want: want{-1, "", `unknown field "extra"`}},
		{name: "unknown device field", data: mutate(t, func(d map[string]any) { devAt(d, 2)["color"] = "red" }), want: want{2, "", `unknown field "color"`}},

		{name: "version missing", data: mutate(t, func(d map[string]any) { delete(d, "version") }), want: want{-1, "version", "missing"}},
		{name: "version 2", data: mutate(t, func(d map[string]any) { d["version"] = 2; d["newThing"] = true }), want: want{-1, "version", "unsupported version 2"}},
		{name: "version string", data: mutate(t, func(d map[string]any) { d["version"] = "1" }), want: want{-1, "version", "not an integer"}},
		{name: "version fraction", data: mutate(t, func(d map[string]any) { d["version"] = 1.5 }), want: want{-1, "version", "not an integer"}},

		{name: "window not power of two", data: mutate(t, func(d map[string]any) { d["window"] = 3 * gib }), want: want{-1, "window", "not a power of two"}},
		{name: "window below minimum", data: mutate(t, func(d map[string]any) { d["window"] = 1 << 20 }), want: want{-1, "window", "smaller than the minimum"}},
		{name: "window negative", data: mutate(t, func(d map[string]any) { d["window"] = -1 }), want: want{-1, "window", "number -1"}},
		{name: "base not aligned", data: mutate(t, func(d map[string]any) { d["base"] = DefaultBase + 4096 }), want: want{-1, "base", "not a multiple"}},
		{name: "base above user space", data: mutate(t, func(d map[string]any) { d["base"] = UserSpaceTop }), want: want{-1, "base", "top of user space"}},
		{name: "windows past user space", data: mutate(t, func(d map[string]any) { d["base"] = UserSpaceTop - 4*256*gib }), want: want{-1, "devices", "at most 4 fit"}},
		{name: "window too large for the device count", data: mutate(t, func(d map[string]any) { d["window"] = uint64(1) << 45; d["base"] = uint64(1) << 45 }), want: want{-1, "devices", "at most 3 fit"}},

		{name: "index out of order", data: mutate(t, func(d map[string]any) { devAt(d, 1)["index"] = 2 }), want: want{1, "index", "is 2, want 1"}},
		{name: "duplicate index (overlapping windows)", data: mutate(t, func(d map[string]any) { devAt(d, 2)["index"] = 1 }), want: want{2, "index", "is 1, want 2"}},
		{name: "negative index", data: mutate(t, func(d map[string]any) { devAt(d, 0)["index"] = -1 }), want: want{0, "index", "is -1"}},
		{name: "duplicate vGPU", data: mutate(t, func(d map[string]any) {
			devs := d["devices"].([]any)
			dup := map[string]any{}
			for k, v := range devAt(d, 0) {
				dup[k] = v
			}
			dup["index"] = 5
			d["devices"] = append(devs, dup)
		}), want: want{5, "vgpu", "duplicates device 0"}},
		{name: "vGPU not matching uuid/slot", data: mutate(t, func(d map[string]any) { devAt(d, 1)["vgpu"] = "GPU-alpha-0-0/7" }), want: want{1, "vgpu", `want "GPU-alpha-0-0/1"`}},
		{name: "zero quota", data: mutate(t, func(d map[string]any) { devAt(d, 3)["memoryQuota"] = 0 }), want: want{3, "memoryQuota", "zero"}},
		{name: "quota over window", data: mutate(t, func(d map[string]any) { devAt(d, 3)["memoryQuota"] = 512 * gib }), want: want{3, "memoryQuota", "do not fit the window"}},
		{name: "quota over GPU memory", data: mutate(t, func(d map[string]any) { devAt(d, 3)["memoryQuota"] = 200 * gib }), want: want{3, "memoryQuota", "exceed the GPU's totalMemory"}},
		{name: "quota of wrong type", data: mutate(t, func(d map[string]any) { devAt(d, 4)["memoryQuota"] = "lots" }), want: want{4, "memoryQuota", "string"}},
		{name: "host missing", data: mutate(t, func(d map[string]any) { devAt(d, 0)["host"] = "" }), want: want{0, "host", "missing"}},
		{name: "host with space", data: mutate(t, func(d map[string]any) { devAt(d, 0)["host"] = "al pha" }), want: want{0, "host", "space"}},
		{name: "server missing", data: mutate(t, func(d map[string]any) { delete(devAt(d, 0), "server") }), want: want{0, "server", "missing"}},
		{name: "address without port", data: mutate(t, func(d map[string]any) { devAt(d, 0)["address"] = "alpha" }), want: want{0, "address", "not host:port"}},
		{name: "address port zero", data: mutate(t, func(d map[string]any) { devAt(d, 0)["address"] = "alpha:0" }), want: want{0, "address", "no valid port"}},
		{name: "address port too big", data: mutate(t, func(d map[string]any) { devAt(d, 0)["address"] = "alpha:65536" }), want: want{0, "address", "no valid port"}},
		{name: "address no host", data: mutate(t, func(d map[string]any) { devAt(d, 0)["address"] = ":7070" }), want: want{0, "address", "no host"}},
		{name: "uuid without GPU-", data: mutate(t, func(d map[string]any) { devAt(d, 0)["gpuUuid"] = "abc" }), want: want{0, "gpuUuid", "not a GPU-"}},
		{name: "uuid with slash", data: mutate(t, func(d map[string]any) { devAt(d, 0)["gpuUuid"] = "GPU-a/b" }), want: want{0, "gpuUuid", "character"}},
		{name: "negative slot", data: mutate(t, func(d map[string]any) { devAt(d, 0)["slot"] = -1 }), want: want{0, "slot", "negative"}},
		{name: "negative gpu index", data: mutate(t, func(d map[string]any) { devAt(d, 0)["gpuIndex"] = -2 }), want: want{0, "gpuIndex", "negative"}},
		{name: "one GPU on two hosts", data: mutate(t, func(d map[string]any) { devAt(d, 1)["host"] = "beta" }), want: want{1, "host", "is on host"}},
		{name: "one GPU with two names", data: mutate(t, func(d map[string]any) {
			devAt(d, 1)["properties"].(map[string]any)["name"] = "other"
		}), want: want{1, "properties", "differ from those of GPU GPU-alpha-0-0 in device 0"}},
		{name: "one GPU with two peer lists", data: mutate(t, func(d map[string]any) { delete(devAt(d, 1), "peers") }), want: want{1, "peers", "differ"}},
		{name: "one GPU with two indices", data: mutate(t, func(d map[string]any) { devAt(d, 1)["gpuIndex"] = 5 }), want: want{1, "gpuIndex", "has index 0"}},
		{name: "one GPU index for two GPUs", data: mutate(t, func(d map[string]any) { devAt(d, 2)["gpuIndex"] = 0 }), want: want{2, "gpuIndex", "is both"}},
		{name: "server on two addresses", data: mutate(t, func(d map[string]any) { devAt(d, 2)["address"] = "x:1" }), want: want{2, "address", "has address"}},
		{name: "two servers on one address", data: mutate(t, func(d map[string]any) { devAt(d, 3)["address"] = "alpha-0.example:7070" }), want: want{3, "address", "also the address"}},
		{name: "bad compute capability", data: mutate(t, func(d map[string]any) {
			devAt(d, 0)["properties"].(map[string]any)["computeCapability"] = "nine"
		}), want: want{0, "properties.computeCapability", "major.minor"}},
		{name: "peer kind NET", data: mutate(t, func(d map[string]any) {
			devAt(d, 3)["peers"].([]any)[0].(map[string]any)["kind"] = "NET"
		}), want: want{3, "peers[0].kind", `"NET" is not`}},
		{name: "peer NV without links", data: mutate(t, func(d map[string]any) {
			delete(devAt(d, 2)["peers"].([]any)[0].(map[string]any), "nvlinks")
		}), want: want{2, "peers[0].nvlinks", "want > 0"}},
		{name: "peer PIX with links", data: mutate(t, func(d map[string]any) {
			devAt(d, 3)["peers"].([]any)[0].(map[string]any)["nvlinks"] = 4
		}), want: want{3, "peers[0].nvlinks", "want 0"}},
		{name: "peer is self", data: mutate(t, func(d map[string]any) {
			devAt(d, 3)["peers"].([]any)[0].(map[string]any)["peerUuid"] = "GPU-beta-0-0"
		}), want: want{3, "peers[0].peerUuid", "own GPU"}},
		{name: "peer listed twice", data: mutate(t, func(d map[string]any) {
			p := devAt(d, 3)["peers"].([]any)
			devAt(d, 3)["peers"] = append(p, p[0])
		}), want: want{3, "peers[1].peerUuid", "listed twice"}},
		{name: "net same host", data: mutate(t, func(d map[string]any) {
			d["net"].([]any)[0].(map[string]any)["toHost"] = "alpha"
		}), want: want{-1, "net[0].toHost", "same host"}},
		{name: "net negative rtt", data: mutate(t, func(d map[string]any) {
			d["net"].([]any)[0].(map[string]any)["rttNs"] = -5
		}), want: want{-1, "net[0].rttNs", "negative"}},
		{name: "net duplicate", data: mutate(t, func(d map[string]any) {
			n := d["net"].([]any)
			d["net"] = append(n, n[0])
		}), want: want{-1, "net[1]", "also net[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(tt.data)
			if tt.ok {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if err := m.Validate(); err != nil {
					t.Fatalf("parsed map does not validate: %v", err)
				}
				return
			}
			if m != nil {
				t.Errorf("Parse returned a map with an error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want *ParseError", err, err)
			}
			if pe.Device != tt.want.dev || pe.Field != tt.want.field || !strings.Contains(err.Error(), tt.want.text) {
				t.Fatalf("err = %q (device %d field %q), want device %d field %q containing %q",
					err, pe.Device, pe.Field, tt.want.dev, tt.want.field, tt.want.text)
			}
			if !strings.HasPrefix(err.Error(), "devicemap: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestParseVersionError(t *testing.T) {
	_, err := Parse([]byte(`{"version":7,"devices":[]}`))
	if !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("err = %v, want ErrUnsupportedVersion", err)
	}
}

func TestRoundTrip(t *testing.T) {
	maps := map[string]*Map{
		"two hosts": twoHostMap(t),
		"empty":     func() *Map { m, _ := New(nil); return m }(),
		"64 devices": func() *Map {
			m, err := New(pool(64, 16*gib), WithLeaseID("big"))
			if err != nil {
				t.Fatal(err)
			}
			return m
		}(),
	}
	for name, m := range maps {
		t.Run(name, func(t *testing.T) {
			data, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse(Encode()): %v\n%s", err, data)
			}
			if len(m.Devices) == 0 {
				m.Devices = []Device{} // Parse reads [] as an empty slice
			}
			if !reflect.DeepEqual(back, m) {
				t.Fatalf("round trip changed the map:\n got %+v\nwant %+v", back, m)
			}
			again, err := back.Encode()
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("second encoding differs (err %v)", err)
			}
			compact, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var viaJSON Map
			if err := json.Unmarshal(compact, &viaJSON); err != nil {
				t.Fatalf("json.Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(&viaJSON, m) {
				t.Fatal("MarshalJSON/UnmarshalJSON round trip changed the map")
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, data); err != nil || !bytes.Equal(buf.Bytes(), compact) {
				t.Fatalf("MarshalJSON is not Encode compacted (err %v)", err)
			}
		})
	}
}

func TestEncodeEmptyDevices(t *testing.T) {
	m := &Map{Version: Version, Base: DefaultBase, Window: gib}
	data, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"devices": []`)) {
		t.Fatalf("empty device list encoded as:\n%s", data)
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	m := twoHostMap(t)
	m.Devices[1].MemoryQuota = 0
	if _, err := m.Encode(); err == nil {
		t.Fatal("Encode of an invalid map succeeded")
	}
	if _, err := json.Marshal(m); err == nil {
		t.Fatal("json.Marshal of an invalid map succeeded")
	}
	var nilMap *Map
	if err := nilMap.Validate(); err == nil {
		t.Fatal("Validate of a nil map succeeded")
	}
}

func TestUnmarshalJSONLeavesMapOnError(t *testing.T) {
	m := twoHostMap(t)
	before := *m
	if err := m.UnmarshalJSON([]byte(`{"version":1,"window":3}`)); err == nil {
		t.Fatal("UnmarshalJSON accepted a bad map")
	}
	if !reflect.DeepEqual(*m, before) {
		t.Fatal("UnmarshalJSON changed the map on error")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "map.json")
	if err := os.WriteFile(good, goodJSON(t), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version":1,"window":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}

	m, err := Load(good)
	if err != nil || m.Len() != 5 {
		t.Fatalf("Load(good) = %v, %v", m, err)
	}
	tests := []struct {
		name, path, text string
		parseErr         bool
	}{
		{"missing file", filepath.Join(dir, "nope.json"), "no such file", false},
		{"invalid map", bad, bad + ": window: ", true},
		{"too big", big, "larger than", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(tt.path)
			if m != nil || err == nil || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("Load = %v, %v, want error containing %q", m, err, tt.text)
			}
			var pe *ParseError
			if errors.As(err, &pe) != tt.parseErr || (tt.parseErr && pe.Path != tt.path) {
				t.Fatalf("err %v: *ParseError %v with path %q", err, tt.parseErr, tt.path)
			}
		})
	}
}
