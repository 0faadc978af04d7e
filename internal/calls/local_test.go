package calls

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestLocalLaneReply(t *testing.T) {
	tok := bytes.Repeat([]byte{7}, LocalTokenSize)
	b := AppendLocalLane(nil, tok, "@xgpu-lane-0123")
	gt, name, err := DecodeLocalLane(b)
	if err != nil || !bytes.Equal(gt, tok) || name != "@xgpu-lane-0123" {
		t.Fatalf("DecodeLocalLane = %x, %q, %v", gt, name, err)
	}
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"token only", tok},
		{"a file name", AppendLocalLane(nil, tok, "/tmp/sock")},
		{"too long", AppendLocalLane(nil, tok, "@"+strings.Repeat("x", 200))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := DecodeLocalLane(tt.data); !errors.Is(err, ErrBadLocalLane) {
				t.Fatalf("DecodeLocalLane = %v", err)
			}
		})
	}
	if Name(OpLocalLane) != "LocalLane" || !Known(OpLocalLane) {
		t.Fatalf("OpLocalLane is not in the tables")
	}
}
