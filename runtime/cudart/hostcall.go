package main

/*
static void xgpu_call_host(void *fn, void *arg) { ((void (*)(void *))fn)(arg); }
*/
import "C"

import "unsafe"

// Host function nodes of CUDA graphs call the application's functions
// from Go when a launch reaches them.
func init() {
	shim.SetHostCaller(func(fn, arg unsafe.Pointer) { C.xgpu_call_host(fn, arg) })
}
