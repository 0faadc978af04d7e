package worker

import (
	"github.com/xgpu/xgpu/internal/calls"
	"github.com/xgpu/xgpu/internal/cudaerr"
	"github.com/xgpu/xgpu/server/backend"
)

// deviceAttributes answers OpDeviceGetAttributes: the attributes of the
// physical GPU under the session's device call.Dev, as its backend
// reports them (backend.Attributes), V1 their count. The values are the
// GPU's: none of them is the vGPU's share (the memory quota is no
// attribute; the client reports it as the device's memory, and the
// compute share limits no attribute the driver reports). A device outside
// the session gets cudaErrorInvalidDevice, a backend that reports no
// attributes cudaErrorNotSupported.
//
// The call reads no state of the device's context, so it neither reports
// nor clears a failure of earlier asynchronous work (dispatch lets it
// through), as cudaDeviceGetAttribute does not.
func (c *conn) deviceAttributes(r req, call *calls.Call) {
	d := c.devOf(call.Dev)
	if d == nil {
		c.answer(r, cudaerr.InvalidDevice, 0, 0, nil, false)
		return
	}
	ab, ok := d.dev.(backend.Attributes)
	if !ok {
		c.answer(r, cudaerr.NotSupported, 0, 0, nil, false)
		return
	}
	s, err := ab.DeviceAttributes()
	if err != nil {
		c.answer(r, err, 0, 0, nil, false)
		return
	}
	if r.noReply {
		return
	}
	// backend.DeviceAttrs and calls.Attrs have one layout.
	set := (*calls.Attrs)(s)
	var buf [calls.MaxAttrsLen]byte
	c.reply(r, 0, uint64(set.Len()), 0, calls.AppendAttrs(buf[:0], set), false)
}
