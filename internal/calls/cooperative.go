package calls

import "github.com/xgpu/xgpu/internal/wire"

// OpLaunchCooperativeKernel launches a kernel whose blocks may synchronize
// grid-wide (cooperative_groups::this_grid().sync()): the backend starts
// it with cuLaunchCooperativeKernel, which guarantees every block of the
// grid is resident at once, and refuses a grid larger than the device can
// hold (cudaErrorCooperativeLaunchTooLarge). Its fields are those of
// OpLaunchKernel: Dev, Stream, Aux: function, Grid, Block, SharedMem, Data:
// packed arguments. Asynchronous like OpLaunchKernel; a refusal is kept and
// reported by the next call that waits for a reply.
const OpLaunchCooperativeKernel wire.Op = 38

// The opcode joins the tables of calls.go here.
func init() {
	opNames[OpLaunchCooperativeKernel] = "LaunchCooperativeKernel"
	opFields[OpLaunchCooperativeKernel] = opFields[OpLaunchKernel]
}
