#!/usr/bin/env python3
"""gpu_ref.py — the peer side of bench/gpu.sh, run on the same GPU in the
same session as build/gpu/bench_gpu, on the inputs it wrote to DIR:

  * in-batch attention: a naive PyTorch implementation written from the
    equations (DESIGN.md, lib/inbatch_attn.h), which materialises the
    B x B x H x L x L scores: one separate softmax per (query chunk i, key
    chunk j) pair over the real keys of j, b = A V_j, V-norm
    b~ = b / (sum_s A_s ||V_j[s]|| + eps), C_i = sum_j W_ij b~_ij.
      - correctness: fp32 autograd (TF32 off) on the bf16-rounded inputs
        against our forward output and dq, dk, dv, dW (rel <= 1e-4);
      - speed: the same code in bf16, forward and forward+backward.
  * matrix products: torch.matmul / F.linear in the shapes bench_gpu timed.

Prints PASS/FAIL lines for the checks and a table (ours, torch, ratio),
which it also writes to DIR/table.txt. Timings are medians of 5
repetitions, CUDA events around several calls after a warm-up.
Usage: gpu_ref.py DIR"""
import json
import math
import statistics
import sys

import numpy as np

TOL = 1e-4   # fp32 vs fp32, different summation order; a real bug is ~1e-1


def rel(a, b):
    a = a.double()
    b = b.double()
    if not bool(torch.isfinite(a).all()):
        return float("inf")
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


def naive_inbatch(q, k, v, w, lengths, eps):
    """q [B,L,H,d]; k, v [B,L,Hkv,d]; w [B,B]; lengths [B] -> C [B,L,H,d]."""
    B, L, H, d = q.shape
    rep = H // k.shape[2]
    k = k.repeat_interleave(rep, dim=2)
    v = v.repeat_interleave(rep, dim=2)
    s = torch.einsum("ithd,jshd->ijhts", q, k) / math.sqrt(d)          # [B,B,H,L,L]
    real = torch.arange(L, device=q.device)[None, :] < lengths[:, None]  # [B(j), L(s)]
    s = s.masked_fill(~real[None, :, None, None, :], float("-inf"))
    a = torch.softmax(s, dim=-1)
    b = torch.einsum("ijhts,jshd->ijhtd", a, v)
    n = torch.einsum("ijhts,jsh->ijht", a, v.norm(dim=-1))
    bt = b / (n + eps)[..., None]
    return torch.einsum("ij,ijhtd->ithd", w, bt)


def time_ms(fn, reps=5, calls=3):
    fn()
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / calls)
    return statistics.median(out)


def load(d, name, shape, dtype="<f4"):
    return torch.from_numpy(np.fromfile(f"{d}/{name}", dtype=dtype).reshape(shape).copy())


def check_and_time_inbatch(d, B, L, H, Hkv, hd, eps, peer):
    """Checks our results against fp32 autograd, times the bf16 naive version; returns 1 on a failed check."""
    dev = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    lengths = load(d, "lengths.bin", (B,), "<i4").to(dev)
    w = load(d, "w.bin", (B, B)).to(dev)
    q = load(d, "q.bin", (B, L, H, hd)).to(dev)
    k = load(d, "k.bin", (B, L, Hkv, hd)).to(dev)
    v = load(d, "v.bin", (B, L, Hkv, hd)).to(dev)
    g = load(d, "dout.bin", (B, L, H, hd)).to(dev)

    # correctness, fp32 autograd
    leaves = [t.clone().requires_grad_() for t in (q, k, v, w)]
    out = naive_inbatch(*leaves[:3], leaves[3], lengths, eps)
    out.backward(g)
    checks = [("out", out.detach(), load(d, "out.bin", (B, L, H, hd)))]
    for name, leaf, shape in (("dq", leaves[0], (B, L, H, hd)), ("dk", leaves[1], (B, L, Hkv, hd)),
                              ("dv", leaves[2], (B, L, Hkv, hd)), ("dw", leaves[3], (B, B))):
        checks.append((name, leaf.grad, load(d, f"{name}.bin", shape)))
    errs = {name: rel(mine.to(dev), ref) for name, ref, mine in checks}
    worst = max(errs.values())
    detail = " ".join(f"{n}={e:.2e}" for n, e in errs.items())
    ok = worst <= TOL
    print(f"{'PASS' if ok else 'FAIL'} gpu-ref/inbatch_vs_torch_fp32 {detail} (tol {TOL:g})")
    peer["check"] = f"{'ok' if ok else 'FAIL'} (worst rel {worst:.1e}, tol {TOL:g})"
    del leaves, out, checks
    torch.cuda.empty_cache()

    # speed, bf16 naive
    qb, kb, vb, wb, gb = (t.bfloat16() for t in (q, k, v, w, g))
    peer["inbatch_fwd"] = time_ms(lambda: naive_inbatch(qb, kb, vb, wb, lengths, eps))
    lb = [t.clone().requires_grad_() for t in (qb, kb, vb, wb)]

    def fwd_bwd():
        for t in lb:
            t.grad = None
        naive_inbatch(*lb[:3], lb[3], lengths, eps).backward(gb)

    peer["inbatch_fwd_bwd"] = time_ms(fwd_bwd)
    del qb, kb, vb, wb, gb, lb
    torch.cuda.empty_cache()
    return 0 if ok else 1


def main():
    if len(sys.argv) != 2:
        print("usage: gpu_ref.py DIR", file=sys.stderr)
        return 2
    d = sys.argv[1]
    meta = json.load(open(f"{d}/meta.json"))
    ours, shapes = {}, {}
    for line in open(f"{d}/results.txt"):
        name, ms, flops, *shape = line.split()
        ours[name] = (float(ms), float(flops))
        shapes[name] = [int(x) for x in shape]
    B, L, H, Hkv, hd, eps = meta["B"], meta["L"], meta["H"], meta["Hkv"], meta["hd"], meta["eps"]
    peer = {}
    failed = 0
    if HAVE_TORCH:
        try:
            failed += check_and_time_inbatch(d, B, L, H, Hkv, hd, eps, peer)
        except Exception as e:   # keep our figures and the GEMM rows
            failed += 1
            print(f"FAIL gpu-ref/inbatch_vs_torch_fp32 (exception: {e!r})")
            torch.cuda.empty_cache()
        for name in ("sgemm_search_f32", "gemm_search_bf16", "gemm_mlp_up_bf16"):
            if name not in shapes:
                continue
            try:
                M, N, K = shapes[name]
                dtype = torch.float32 if name.startswith("sgemm") else torch.bfloat16
                a = torch.randn(M, K, device="cuda", dtype=dtype)
                b = torch.randn(N, K, device="cuda", dtype=dtype)
                peer[name] = time_ms(lambda: torch.nn.functional.linear(a, b))
                del a, b
            except Exception as e:
                print(f"# torch {name}: {e!r}")
    else:
        print(f"# torch with CUDA not available ({WHY_NO_TORCH}): our figures only")

    def cell(x):
        return f"{x:10.3f}" if x is not None else f"{'n/a':>10}"

    def label(name, what):
        dims = shapes.get(name, [])
        if name.startswith("inbatch") and len(dims) == 5:
            return f"{what} B{dims[0]} L{dims[1]} H{dims[2]}/{dims[3]} d{dims[4]}"
        if len(dims) == 3:
            return f"{what} {dims[0]}x{dims[1]}x{dims[2]}"
        return what

    both = None
    if "inbatch_fwd" in ours and "inbatch_bwd" in ours:
        both = (ours["inbatch_fwd"][0] + ours["inbatch_bwd"][0], ours["inbatch_fwd"][1] + ours["inbatch_bwd"][1])
    rows = [
        (label("inbatch_fwd", "inbatch fwd"), ours.get("inbatch_fwd"), peer.get("inbatch_fwd"), "naive torch bf16"),
        (label("inbatch_fwd", "inbatch fwd+bwd"), both, peer.get("inbatch_fwd_bwd"), "naive torch bf16 autograd"),
        (label("sgemm_search_f32", "sgemm f32"), ours.get("sgemm_search_f32"), peer.get("sgemm_search_f32"),
         "torch fp32, TF32 off"),
        (label("gemm_search_bf16", "gemm bf16"), ours.get("gemm_search_bf16"), peer.get("gemm_search_bf16"),
         "torch bf16"),
        (label("gemm_mlp_up_bf16", "gemm bf16 MLP-up"), ours.get("gemm_mlp_up_bf16"), peer.get("gemm_mlp_up_bf16"),
         "torch bf16"),
    ]
    lines = [f"{'op':34} {'ours ms':>10} {'torch ms':>10} {'torch/ours':>10} {'ours TF/s':>9}  peer",
             "-" * 100]
    for name, mine, theirs, what in rows:
        ms = mine[0] if mine else None
        tf = f"{mine[1] / (mine[0] * 1e-3) / 1e12:9.1f}" if mine else f"{'n/a':>9}"
        ratio = f"{theirs / ms:10.2f}" if (ms and theirs) else f"{'n/a':>10}"
        lines.append(f"{name:34} {cell(ms)} {cell(theirs)} {ratio} {tf}  {what}")
    if "check" in peer:
        lines.append(f"in-batch results vs torch fp32 autograd (out, dq, dk, dv, dW): {peer['check']}")
    table = "\n".join(lines)
    print(table)
    with open(f"{d}/table.txt", "w") as f:
        f.write(table + "\n")
    return 1 if failed else 0


try:
    import torch
    HAVE_TORCH = torch.cuda.is_available()
    WHY_NO_TORCH = "" if HAVE_TORCH else "torch.cuda.is_available() is False"
except ImportError as e:
    HAVE_TORCH = False
    WHY_NO_TORCH = str(e)

if __name__ == "__main__":
    sys.exit(main())
