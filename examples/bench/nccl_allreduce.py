#!/usr/bin/env python3
"""NCCL all-reduce bus bandwidth through torch.distributed.

The native baseline of `xgpu bench`'s allreduce group (docs/bench.md). One
process per GPU (torch.multiprocessing spawn, NCCL backend, rendezvous on
127.0.0.1:PORT); rank r runs on GPU r of CUDA_VISIBLE_DEVICES. A
measurement is COUNT in-place float32 sum all-reduces of BYTES bytes,
issued back to back on every rank, timed on each rank from a one-element
all-reduce that lines the ranks up to torch.cuda.synchronize() after the
last one; the slowest rank's time counts. It prints the bus bandwidth,
COUNT * BYTES / time * 2(n-1)/n over n ranks, in GB/s (10^9 bytes/s).

    nccl_allreduce.py --nprocs 4 --port 29500            # every size: allreduce_<size> <busbw> GB/s
    nccl_allreduce.py --nprocs 4 --port 29500 serve      # one command per line of standard input

Serve mode speaks the protocol of examples/bench/cudabench.cu: one command
"OP COUNT BYTES DEV PEER" per line; "info 0 0 0 0" answers "devices N
count" and "ranks N count", "allreduce COUNT BYTES 0 0" answers "allreduce
BUSBW GB/s"; every answer ends with a line "ok", a command it refuses gets
"error MESSAGE" instead. Where torch, CUDA or NCCL is missing, or there are
fewer GPUs than ranks, it answers every command with "error REASON". A
failing rank ends it (exit 1, the traceback on standard error).

Run it with NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
NVSHMEM_DISABLE_NVLS=1 in the environment (xgpu bench sets them).
"""

import argparse
import os
import queue
import sys
import time

SIZES = [1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30]


def size_name(n):
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return "%d%s" % (n >> shift, unit)
    return "%dB" % n


def parse_size(s):
    s = s.strip()
    for shift, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB"), (0, "B")):
        if s.endswith(unit):
            return int(s[: -len(unit)]) << shift
    return int(s)


def unavailable(nprocs):
    """Returns why this machine cannot run the baseline, or None."""
    if nprocs < 2:
        return "needs at least 2 ranks, got %d" % nprocs
    try:
        import torch
        import torch.distributed as dist
    except Exception as e:  # ImportError, or a broken installation
        return "torch is not available: %s" % e
    if not torch.cuda.is_available():
        return "torch %s sees no CUDA GPU" % torch.__version__
    if not dist.is_available() or not dist.is_nccl_available():
        return "torch %s has no NCCL backend" % torch.__version__
    if torch.cuda.device_count() < nprocs:
        return "needs %d GPUs, torch sees %d" % (nprocs, torch.cuda.device_count())
    return None


def rank_main(rank, nprocs, port, cmds, results):
    """One rank: runs the commands of its queue until it gets None."""
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=nprocs)
    line_up = torch.zeros(1, dtype=torch.float32, device="cuda")
    dist.all_reduce(line_up)  # the communicator is made here
    torch.cuda.synchronize()
    buf = torch.zeros(0, dtype=torch.float32, device="cuda")
    if rank == 0:
        results.put(("ready", 0.0))
    while True:
        cmd = cmds[rank].get()
        if cmd is None:
            break
        count, nbytes = cmd
        elems = nbytes // 4
        if buf.numel() < elems:
            # Zeros: sums stay exact and normal however often they repeat.
            buf = None
            buf = torch.zeros(elems, dtype=torch.float32, device="cuda")
        x = buf[:elems]
        dist.all_reduce(line_up)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(count):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        took = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device="cuda")
        dist.all_reduce(took, op=dist.ReduceOp.MAX)
        if rank == 0:
            busbw = count * elems * 4 / took.item() * 2 * (nprocs - 1) / nprocs / 1e9
            results.put(("allreduce", busbw))
    dist.destroy_process_group()


class Ranks:
    """The rank processes and the queues to and from them."""

    def __init__(self, nprocs, port):
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.nprocs = nprocs
        self.cmds = [ctx.SimpleQueue() for _ in range(nprocs)]
        self.results = ctx.Queue()
        self.procs = mp.spawn(rank_main, args=(nprocs, port, self.cmds, self.results), nprocs=nprocs, join=False)
        self.wait()

    def wait(self):
        """Waits for rank 0's next result; a rank that fails raises here."""
        while True:
            try:
                return self.results.get(timeout=0.2)[1]
            except queue.Empty:
                if self.procs.join(timeout=0):  # raises if a rank failed
                    raise RuntimeError("the ranks exited")

    def allreduce(self, count, nbytes):
        for q in self.cmds:
            q.put((count, nbytes))
        return self.wait()

    def close(self):
        for q in self.cmds:
            q.put(None)
        while not self.procs.join():
            pass


def answer(lines):
    print("\n".join(lines), flush=True)


def serve(args):
    why = unavailable(args.nprocs)
    ranks = None
    if why is None:
        import torch

        ranks = Ranks(args.nprocs, args.port)
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if why is not None:
            answer(["error " + why])
            continue
        try:
            op, count, nbytes = f[0], int(f[1]), int(f[2])
            if len(f) != 5:
                raise ValueError("want 5 fields, got %d" % len(f))
        except (IndexError, ValueError) as e:
            answer(["error malformed command %r: %s" % (line.strip(), e)])
            continue
        if op == "info":
            answer(["devices %d count" % torch.cuda.device_count(), "ranks %d count" % args.nprocs, "ok"])
        elif op == "allreduce":
            if count < 1 or nbytes < 4:
                answer(["error allreduce: count %d, %d bytes: want at least 1 and 4" % (count, nbytes)])
                continue
            answer(["allreduce %.6f GB/s" % ranks.allreduce(count, nbytes), "ok"])
        else:
            answer(["error unknown operation %r" % op])
    if ranks is not None:
        ranks.close()
    return 0


def run_sizes(args):
    why = unavailable(args.nprocs)
    if why is not None:
        print("nccl_allreduce: " + why, file=sys.stderr)
        return 2
    import torch

    ranks = Ranks(args.nprocs, args.port)
    print("# nccl_allreduce: %d ranks, torch %s, NCCL %s" % (args.nprocs, torch.__version__,
                                                             ".".join(map(str, torch.cuda.nccl.version()))), flush=True)
    for n in args.sizes:
        ranks.allreduce(args.warmup, n)
        answer(["allreduce_%s %.6f GB/s" % (size_name(n), ranks.allreduce(args.iters, n))])
    ranks.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nprocs", type=int, required=True, help="ranks, one process per GPU")
    p.add_argument("--port", type=int, required=True, help="rendezvous port on 127.0.0.1")
    p.add_argument("--sizes", default=",".join(size_name(n) for n in SIZES),
                   help="comma-separated sizes, e.g. 1MiB,64MiB,1GiB (default: 1MiB to 1GiB)")
    p.add_argument("--warmup", type=int, default=5, help="untimed all-reduces per size")
    p.add_argument("--iters", type=int, default=20, help="timed all-reduces per size")
    p.add_argument("mode", nargs="?", choices=["serve"], help="serve: read commands from standard input")
    args = p.parse_args()
    args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    if args.mode == "serve":
        return serve(args)
    return run_sizes(args)


if __name__ == "__main__":
    sys.exit(main())
