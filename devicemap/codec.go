package devicemap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// MaxFileSize is the largest map file Load reads (16 MiB, far above the size
// of a map of thousands of devices).
const MaxFileSize = 16 << 20

// mapJSON is Map without its methods, for encoding/json.
type mapJSON Map

// docJSON is the top level of a map document. Devices and net links are
// decoded one by one so that an error names the element at fault.
type docJSON struct {
	Version int               `json:"version"`
	LeaseID string            `json:"leaseId"`
	Base    uint64            `json:"base"`
	Window  uint64            `json:"window"`
	Devices []json.RawMessage `json:"devices"`
	Net     []json.RawMessage `json:"net"`
}

// Parse decodes and validates a JSON map. It is strict: unknown fields,
// trailing data, another version and every rule of Validate are errors. A
// zero or missing base means DefaultBase, a zero or missing window means
// WindowFor(the largest device). Errors are *ParseError; Parse never panics.
func Parse(data []byte) (*Map, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, mapErr("", msg("empty document"))
	}
	// Read the version first, leniently, so that a document of another
	// version is reported as such rather than as unknown fields.
	var head struct {
		Version json.RawMessage `json:"version"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&head); err != nil {
		return nil, jsonErr(err, -1, "")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, mapErr("", fmt.Errorf("trailing data after the map at byte %d", dec.InputOffset()))
	}
	if len(head.Version) != 0 && string(head.Version) != "null" {
		v, err := strconv.Atoi(string(head.Version))
		if err != nil {
			return nil, mapErr("version", fmt.Errorf("%s is not an integer", head.Version))
		}
		if err := checkVersion(v); err != nil {
			return nil, err
		}
	}

	var doc docJSON
	if err := decodeStrict(data, &doc); err != nil {
		return nil, jsonErr(err, -1, "")
	}
	if err := checkVersion(doc.Version); err != nil {
		return nil, err
	}
	m := &Map{
		Version: doc.Version,
		LeaseID: doc.LeaseID,
		Base:    doc.Base,
		Window:  doc.Window,
		Devices: make([]Device, len(doc.Devices)),
	}
	for i, raw := range doc.Devices {
		if err := decodeStrict(raw, &m.Devices[i]); err != nil {
			return nil, jsonErr(err, i, "")
		}
	}
	if len(doc.Net) > 0 {
		m.Net = make([]NetLink, len(doc.Net))
		for k, raw := range doc.Net {
			if err := decodeStrict(raw, &m.Net[k]); err != nil {
				return nil, jsonErr(err, -1, "net["+strconv.Itoa(k)+"]")
			}
		}
	}
	if err := m.fillDefaults(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// jsonErr turns an encoding/json error about device dev (or -1) or the
// element named prefix into a *ParseError.
func jsonErr(err error, dev int, prefix string) *ParseError {
	join := func(field string) string {
		switch {
		case prefix == "":
			return field
		case field == "":
			return prefix
		}
		return prefix + "." + field
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &ParseError{Device: dev, Field: prefix, Err: msg("truncated JSON")}
	case errors.As(err, &syn):
		return &ParseError{Device: dev, Field: prefix,
			Err: fmt.Errorf("invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))}
	case errors.As(err, &typ):
		if typ.Field == "" {
			return &ParseError{Device: dev, Field: prefix, Err: fmt.Errorf("%s where an object is expected", typ.Value)}
		}
		return &ParseError{Device: dev, Field: join(typ.Field), Err: fmt.Errorf("%s where a %s is expected", typ.Value, typ.Type)}
	default:
		return &ParseError{Device: dev, Field: prefix, Err: errors.New(strings.TrimPrefix(err.Error(), "json: "))}
	}
}

// Load reads and parses the map file at path. Parse errors are *ParseError
// with Path set.
func Load(path string) (*Map, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("devicemap: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("devicemap: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &ParseError{Path: path, Device: -1, Err: fmt.Errorf("file larger than %d bytes", MaxFileSize)}
	}
	m, err := Parse(data)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Path = path
		}
		return nil, err
	}
	return m, nil
}

// Encode validates m and returns it as indented JSON with a final newline.
// The output is stable: the same map always encodes to the same bytes, and
// Parse reads it back to an equal map.
func (m *Map) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m.forJSON(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("devicemap: encode: %w", err)
	}
	return append(b, '\n'), nil
}

// MarshalJSON validates m and returns it as compact JSON, the same document
// as Encode without the indentation.
func (m *Map) MarshalJSON() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m.forJSON())
	if err != nil {
		return nil, fmt.Errorf("devicemap: encode: %w", err)
	}
	return b, nil
}

// UnmarshalJSON parses data as Parse does. On error m is left unchanged.
func (m *Map) UnmarshalJSON(data []byte) error {
	p, err := Parse(data)
	if err != nil {
		return err
	}
	*m = *p
	return nil
}

// forJSON returns m as a value encoding/json writes without calling back
// into MarshalJSON, with an empty device list written as [].
func (m *Map) forJSON() *mapJSON {
	if m.Devices != nil {
		return (*mapJSON)(m)
	}
	c := *m
	c.Devices = []Device{}
	return (*mapJSON)(&c)
}
