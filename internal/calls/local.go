package calls

import (
	"errors"

	"github.com/xgpu/xgpu/internal/wire"
)

// OpLocalLane asks the worker for a local lane for this connection's bulk
// data (peers.Conn.OfferLocal): a client on the worker's host then moves
// copies through shared memory. The reply's Data is the lane's token
// (LocalTokenSize bytes) followed by its abstract socket name; the client
// joins it (peers.Conn.JoinLocal) before any call that moves bulk data. A
// worker that offers none answers cudaErrorNotSupported. Synchronous; it
// reports no failure of earlier asynchronous work.
const OpLocalLane wire.Op = 37

// LocalTokenSize is the length of a local lane's token.
const LocalTokenSize = 32

// MaxLocalLaneReply bounds the reply's Data.
const MaxLocalLaneReply = LocalTokenSize + 108 // a Unix socket name has at most 108 bytes

// The opcode joins the tables of calls.go here.
func init() {
	opNames[OpLocalLane], opFields[OpLocalLane] = "LocalLane", 0
}

// ErrBadLocalLane is returned by DecodeLocalLane for a malformed reply.
var ErrBadLocalLane = errors.New("calls: malformed local lane offer")

// AppendLocalLane appends the Data of an OpLocalLane reply to b.
func AppendLocalLane(b []byte, token []byte, name string) []byte {
	return append(append(b, token...), name...)
}

// DecodeLocalLane splits an OpLocalLane reply's Data. The name must be an
// abstract socket name ("@..."), so that a reply cannot point the client
// at a file.
func DecodeLocalLane(data []byte) (token []byte, name string, err error) {
	if len(data) <= LocalTokenSize+1 || len(data) > MaxLocalLaneReply || data[LocalTokenSize] != '@' {
		return nil, "", ErrBadLocalLane
	}
	return data[:LocalTokenSize:LocalTokenSize], string(data[LocalTokenSize:]), nil
}
