package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// DefaultNCCLPython is the interpreter of the NCCL baseline when
// NCCLConfig.Python is zero.
const DefaultNCCLPython = "python3"

// NCCLEnv is put into the NCCL baseline's environment before
// NCCLConfig.Env: NVLink multicast (NVLS) off in NCCL, torch's symmetric
// memory and NVSHMEM, as in every GPU run of the project.
var NCCLEnv = []string{"NCCL_NVLS_ENABLE=0", "TORCH_SYMM_MEM_DISABLE_MULTICAST=1", "NVSHMEM_DISABLE_NVLS=1"}

// NCCLConfig starts the NCCL baseline of the allreduce group: the script
// examples/bench/nccl_allreduce.py in serve mode, one process per GPU
// (torch.multiprocessing spawn, NCCL backend of torch.distributed,
// rendezvous on 127.0.0.1).
type NCCLConfig struct {
	// Python is the interpreter, with torch installed. Zero:
	// DefaultNCCLPython, looked up in PATH.
	Python string
	// Script is the path of examples/bench/nccl_allreduce.py. Required.
	Script string
	// Ranks is the number of processes, one per GPU: rank r runs on GPU r
	// of the script's CUDA_VISIBLE_DEVICES (set it in Env). At least 2.
	Ranks int
	// Port is the rendezvous port on 127.0.0.1. Zero: a port the kernel
	// reports free.
	Port int
	// Env is added to this process's environment after NCCLEnv (e.g.
	// CUDA_VISIBLE_DEVICES). Zero: nothing more.
	Env []string
	// Stderr receives the script's standard error (NCCL's and torch's
	// messages). Zero: discarded; its last lines still go into the error
	// of a failed command.
	Stderr io.Writer
	// Timeout bounds the start (spawning the ranks, the first NCCL
	// all-reduce) and then each command. Zero: DefaultNativeTimeout.
	Timeout time.Duration
}

// args returns the script's command line before "serve".
func (c NCCLConfig) args() []string {
	return []string{c.Script, "--nprocs", strconv.Itoa(c.Ranks), "--port", strconv.Itoa(c.Port)}
}

// StartNCCL starts the NCCL baseline in serve mode and waits until every
// rank has joined and run a first all-reduce. Its commands are the native
// program's protocol (NativeProgram), with the operations NativeInfo and
// NativeAllReduce. It fails, and leaves nothing running, where the
// interpreter, torch, CUDA or NCCL is missing or there are fewer GPUs than
// ranks: the error says which (the script's refusal is a *NativeError).
// ctx bounds the start only; Close stops the script and its ranks.
func StartNCCL(ctx context.Context, cfg NCCLConfig) (*NativeProgram, error) {
	switch {
	case cfg.Script == "":
		return nil, errors.New("bench: nccl: no script path")
	case cfg.Ranks < 2:
		return nil, fmt.Errorf("bench: nccl: %d ranks, want at least 2", cfg.Ranks)
	case cfg.Port < 0 || cfg.Port > 65535:
		return nil, fmt.Errorf("bench: nccl: port %d outside 0..65535", cfg.Port)
	}
	if cfg.Python == "" {
		cfg.Python = DefaultNCCLPython
	}
	if cfg.Port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg.Port = p
	}
	env := append(append([]string{}, NCCLEnv...), cfg.Env...)
	p, err := StartNative(ctx, NativeConfig{Path: cfg.Python, Args: cfg.args(), Env: env, Stderr: cfg.Stderr, Timeout: cfg.Timeout})
	if err != nil {
		return nil, fmt.Errorf("bench: nccl: %w", err)
	}
	figs, err := p.Measure(ctx, NativeCommand{Op: NativeInfo})
	if err == nil {
		err = ncclInfo(figs, cfg.Ranks)
	}
	if err != nil {
		_ = p.Close()
		return nil, fmt.Errorf("bench: nccl: %s %s: %w", cfg.Python, cfg.Script, err)
	}
	return p, nil
}

// ncclInfo checks the script's answer to NativeInfo: it runs want
// ranks.
func ncclInfo(figs []Figure, want int) error {
	vs, err := values(figs, "ranks", "count", 1)
	if err != nil {
		return err
	}
	if int(vs[0]) != want {
		return fmt.Errorf("the script runs %v ranks, want %d", vs[0], want)
	}
	return nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: nccl: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
