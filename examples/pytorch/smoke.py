"""PyTorch smoke test for xgpu: element-wise tensor work on every device.

Run natively and through xgpu's libcudart.so.13 and libcuda.so.1
(examples/pytorch/run.sh); the standard output must be the same. Exits
non-zero on a wrong number. The last check uses a kernel PyTorch compiles at
run time (the jiterator: NVRTC, then cuModuleLoadData and cuLaunchKernel
through the driver API); then a CUDA graph is captured with torch.cuda.graph
and replayed.
"""
import os
import sys

import torch


def cuda_graph(dev: torch.device) -> bool:
    """Captures a few element-wise ops on a static input with
    torch.cuda.graph (stream capture on a side stream), replays the graph
    twice with new data copied into the input, and compares each replay
    with the same ops run eagerly."""
    def ops(t):
        return (t * 3 + 1).relu() * t.sin() + t.exp().log1p()

    with torch.cuda.device(dev):
        static_in = torch.zeros(1 << 16, device=dev)
        s = torch.cuda.Stream(device=dev)
        s.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(s):              # warm up off the default stream, as PyTorch advises
            for _ in range(2):
                ops(static_in)
        torch.cuda.current_stream(dev).wait_stream(s)
        g = torch.cuda.CUDAGraph()
        # The capture stream must be one of this device: torch.cuda.graph's
        # default is a single stream made on the device current when the
        # first graph was made, and capturing on another device's stream
        # records nothing (natively as through xgpu).
        with torch.cuda.graph(g, stream=s):
            static_out = ops(static_in)
        ok = True
        for seed in (1, 2):
            gen = torch.Generator().manual_seed(seed)
            data = torch.randn(1 << 16, generator=gen).to(dev)
            static_in.copy_(data)
            g.replay()
            torch.cuda.synchronize(dev)
            ok = ok and bool(torch.allclose(static_out, ops(data), rtol=1e-5, atol=1e-5))
        del g
        return ok


def main() -> int:
    n = torch.cuda.device_count()
    print(f"device_count {n}")
    want = os.environ.get("XGPU_EXPECT_DEVICES")
    if want is not None and n != int(want):
        print(f"FAIL: device_count {n}, want {want}", file=sys.stderr)
        return 1
    bad = 0
    for d in range(n):
        dev = torch.device("cuda", d)
        x = torch.arange(100_000, device=dev, dtype=torch.float32)
        y = x * 2 + 1                       # element-wise kernels
        s = int(y.double().sum().item())    # reduction + D2H copy
        want_s = sum(2 * i + 1 for i in range(100_000))
        z = torch.ones(1 << 20, device=dev, dtype=torch.int32).cumsum(0)
        last = int(z[-1].item())
        h = (torch.full((4096,), 3.0, device=dev) ** 2).cpu()  # H2D, pow, D2H
        ok = s == want_s and last == 1 << 20 and bool((h == 9.0).all())
        bad += not ok
        print(f"device {d}: sum {s} cumsum {last} pow {float(h[0])} {'ok' if ok else 'WRONG'}")
    if n > 1:
        a = torch.arange(1 << 20, device="cuda:0", dtype=torch.float32)
        b = a.to(f"cuda:{n - 1}")           # device-to-device copy
        ok = bool((b.cpu() == a.cpu()).all())
        bad += not ok
        print(f"copy cuda:0 -> cuda:{n - 1}: {'ok' if ok else 'WRONG'}")
    for d in range(n):
        dev = torch.device("cuda", d)
        try:
            x = torch.linspace(0, 20, 4096, device=dev)
            j = torch.special.bessel_j0(x).cpu()   # a jiterator kernel
            ok = bool(torch.allclose(j, torch.special.bessel_j0(x.cpu()), atol=1e-5))
        except RuntimeError as e:
            print(f"device {d}: bessel_j0 raised {e}", file=sys.stderr)
            ok = False
        bad += not ok
        print(f"device {d}: bessel_j0 (run-time compiled kernel) {'ok' if ok else 'WRONG'}")
    for d in range(n):
        ok = cuda_graph(torch.device("cuda", d))
        bad += not ok
        print(f"device {d}: cuda graph (capture, replay twice) {'ok' if ok else 'WRONG'}")
    print("PASS" if bad == 0 else "FAIL")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
