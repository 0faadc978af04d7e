// Package calls defines the call protocol that the client runtime speaks to
// workers, and workers to each other, over the QUIC call stream: the
// opcodes, the layout of a request (Call) and of a reply (Reply).
//
// Each request is one wire frame whose opcode names the CUDA operation and
// whose body holds exactly the fields that opcode lists, little endian:
//
//	var e wire.Enc
//	c := calls.Call{Dev: 3, N: 1 << 20}
//	_ = c.Encode(calls.OpMalloc, &e)
//	w.WriteFrame(&wire.Header{Op: calls.OpMalloc, ReqID: id}, e.B)
//
// Asynchronous calls (launches, async copies, memsets, event records, frees)
// carry wire.FlagNoReply and get no reply; a failure is kept by the worker and
// returned by the next call that waits for a reply, as CUDA returns errors of
// asynchronous work from a later call. Decoding never panics on any input.
//
// Modules and kernels: OpModuleHave and OpModuleLoad name an image by its
// SHA-256; OpModuleGetFunction answers a kernel's parameter layout
// (AppendParams, DecodeParams), which the client keeps and packs launch
// arguments by; OpLaunchKernel carries the grid, the block and the dynamic
// shared memory (Call.Grid, Call.Block, Call.SharedMem) and the packed
// arguments inline (at most MaxKernelArgs bytes); OpLaunchCooperativeKernel
// carries the same fields for a launch whose blocks are all resident at
// once.
//
// Devices: OpDeviceGetAttributes answers every attribute the device's
// driver answers (CUDA's cudaDeviceAttr numbers, 1..MaxAttr-1; one it
// refuses is absent) as one compact set in the reply's data: a bitmap of
// the attributes present, then their int32 values (AppendAttrs,
// DecodeAttrs).
//
// The types are plain values; a Call or Reply must not be used by two
// goroutines at once.
package calls
