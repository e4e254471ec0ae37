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
  * in-batch attention memory (DIR/mem_ours.txt, from bench_gpu; with
    --mem-only that is all DIR holds): at each B bench_gpu measured, the
    reference's own inbatch_attention (scripts/revela_torch.py: the original
    code's [B,B,H,L,L] logits, fp32 softmax, bf16 probabilities) forward and
    backward in bf16 on fresh inputs (q [B,H,L,d], K/V cache [B,Hkv,L,d], key
    padding bias, W; all requiring gradients as in the step): peak of
    torch.cuda.max_memory_allocated over the allocated bytes before the
    inputs. OOM is recorded as such. Written to DIR/mem.txt as key/value
    lines (inbatch_mem_bB_ours_mib, _ref_mib, _io_mib, _tensor_mib: one
    [B,B,H,L,L] bf16 tensor) and printed as INFO lines and table rows.

Prints PASS/FAIL lines for the checks and a table (ours, torch, ratio),
which it also writes to DIR/table.txt. Timings are medians of 5
repetitions, CUDA events around several calls after a warm-up.
Usage: gpu_ref.py DIR [--mem-device cuda|cpu]   (cpu: dry runs without a
GPU run the reference's code on the CPU; its memory is then n/a)"""
import json
import math
import os
import statistics
import sys

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


def time_causal(B, L, H, Hkv, hd, peer):
    """torch's causal SDPA in bf16 at our causal rows' shape, K/V repeated to
    the query heads first (transformers' Llama SDPA path); is_causal=True
    with no padding mask, so torch may pick its flash kernel."""
    q = torch.randn(B, H, L, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(B, Hkv, L, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(B, Hkv, L, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(B, H, L, hd, device="cuda", dtype=torch.bfloat16)

    def fwd():
        kk = k.repeat_interleave(H // Hkv, dim=1)
        vv = v.repeat_interleave(H // Hkv, dim=1)
        return torch.nn.functional.scaled_dot_product_attention(q, kk, vv, is_causal=True)

    def fwd_bwd():
        fwd().backward(g)

    with torch.no_grad():
        peer["causal_fwd"] = time_ms(fwd)
    peer["causal_fwd_bwd"] = time_ms(fwd_bwd)


def load(d, name, shape, dtype="<f4"):
    import numpy as np   # here: the memory-only path needs no numpy
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


def ref_inbatch_mem(B, L, H, Hkv, hd, dev):
    """Peak bytes of the reference's in-batch attention, forward + backward
    (bf16), counted from before its inputs exist; None where torch cannot
    measure it (CPU)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
    import revela_torch as rt

    def repeat_kv(x, n_rep):   # transformers' repeat_kv: [B, Hkv, L, d] -> [B, Hkv * n_rep, L, d]
        b, hk, l, dd = x.shape
        return x if n_rep == 1 else x[:, :, None].expand(b, hk, n_rep, l, dd).reshape(b, hk * n_rep, l, dd)

    cuda = dev == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    g = torch.Generator(device=dev).manual_seed(B)
    bf = torch.bfloat16
    q = torch.randn(B, H, L, hd, device=dev, dtype=bf, generator=g).requires_grad_()
    k = torch.randn(B, Hkv, L, hd, device=dev, dtype=bf, generator=g).requires_grad_()
    v = torch.randn(B, Hkv, L, hd, device=dev, dtype=bf, generator=g).requires_grad_()
    lengths = L - torch.randint(0, L // 4 + 1, (B,), device=dev, generator=g)
    real = torch.arange(L, device=dev)[None, :] < lengths[:, None]
    key_bias = torch.zeros(B, L, device=dev, dtype=bf).masked_fill(~real, torch.finfo(bf).min)
    z = torch.randn(B, B, device=dev, generator=g).masked_fill(torch.eye(B, dtype=torch.bool, device=dev),
                                                                 float("-inf"))
    W = torch.softmax(z / 0.1, dim=-1).to(bf).requires_grad_()
    dout = torch.randn(B, H, L, hd, device=dev, dtype=bf, generator=g)
    out = rt.inbatch_attention(q, k, v, key_bias, W, True, H // Hkv, repeat_kv)
    out.backward(dout)
    if not cuda:
        return None
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del q, k, v, key_bias, W, dout, out, z
    torch.cuda.empty_cache()
    return peak


def inbatch_memory(d, dev):
    """Reads DIR/mem_ours.txt, measures the reference at the same shapes;
    returns (table rows, failures) and writes DIR/mem.txt."""
    rows, kv, failed = [], [], 0
    for line in open(f"{d}/mem_ours.txt"):
        B, L, H, Hkv, hd, measured, io = (int(x) for x in line.split())
        mib = lambda x: x / 2**20
        ours = mib(measured) if measured >= 0 else None
        tensor = mib(B * B * H * L * L * 2)
        ref, note = None, ""
        if not HAVE_TORCH_ANY:
            note = f"reference not run: {WHY_NO_TORCH}"
        elif dev == "cuda" and not HAVE_TORCH:
            note = f"reference not run: {WHY_NO_TORCH}"
        else:
            try:
                r = ref_inbatch_mem(B, L, H, Hkv, hd, dev)
                ref = mib(r) if r is not None else None
                note = "" if r is not None else f"reference ran on {dev}: memory not measurable there"
            except Exception as e:   # torch.cuda.OutOfMemoryError among them
                if "out of memory" in str(e).lower():
                    ref, note = "OOM", f"reference out of memory: {str(e).splitlines()[0][:160]}"
                else:
                    failed += 1
                    note = f"reference failed: {e!r}"[:300]
                    print(f"FAIL gpu-ref/inbatch_mem_b{B} ({note})")
                if dev == "cuda":
                    torch.cuda.empty_cache()
        fmt = lambda x: "n/a" if x is None else x if isinstance(x, str) else f"{x:.1f}"
        ratio = f"{ref / ours:.1f}" if isinstance(ref, float) and ours else "n/a"
        print(f"INFO inbatch-mem B={B} L={L} H={H}/{Hkv} d={hd}: ours {fmt(ours)} MiB, reference {fmt(ref)} MiB, "
              f"reference/ours {ratio} (inputs+outputs+gradients {mib(io):.1f} MiB; one [B,B,H,L,L] bf16 tensor "
              f"{tensor:.1f} MiB){'; ' + note if note else ''}")
        kv += [(f"inbatch_mem_b{B}_ours_mib", fmt(ours)), (f"inbatch_mem_b{B}_ref_mib", fmt(ref)),
               (f"inbatch_mem_b{B}_io_mib", f"{mib(io):.1f}"), (f"inbatch_mem_b{B}_tensor_mib", f"{tensor:.1f}")]
        rows.append((f"inbatch peak MiB B{B} L{L} H{H}/{Hkv}", ours, ref if isinstance(ref, float) else None,
                     "reference inbatch_attention bf16 fwd+bwd" + (" (OOM)" if ref == "OOM" else "")))
    with open(f"{d}/mem.txt", "w") as f:
        for k, v in kv:
            f.write(f"{k} {v}\n")
    return rows, failed


def main():
    args = sys.argv[1:]
    dev = "cuda"
    if len(args) == 3 and args[1] == "--mem-device" and args[2] in ("cuda", "cpu"):
        dev = args[2]
        args = args[:1]
    if len(args) != 1:
        print("usage: gpu_ref.py DIR [--mem-device cuda|cpu]", file=sys.stderr)
        return 2
    d = args[0]
    mem_rows, failed = [], 0
    if os.path.exists(f"{d}/mem_ours.txt"):
        mem_rows, failed = inbatch_memory(d, dev)
    if not os.path.exists(f"{d}/results.txt"):   # bench_gpu --mem-only
        return 1 if failed else 0
    meta = json.load(open(f"{d}/meta.json"))
    ours, shapes = {}, {}
    for line in open(f"{d}/results.txt"):
        name, ms, flops, *shape = line.split()
        ours[name] = (float(ms), float(flops))
        shapes[name] = [int(x) for x in shape]
    B, L, H, Hkv, hd, eps = meta["B"], meta["L"], meta["H"], meta["Hkv"], meta["hd"], meta["eps"]
    peer = {}
    if HAVE_TORCH:
        try:
            failed += check_and_time_inbatch(d, B, L, H, Hkv, hd, eps, peer)
        except Exception as e:   # keep our figures and the GEMM rows
            failed += 1
            print(f"FAIL gpu-ref/inbatch_vs_torch_fp32 (exception: {e!r})")
            torch.cuda.empty_cache()
        if "causal_fwd" in shapes:
            try:
                time_causal(*shapes["causal_fwd"][:5], peer)
            except Exception as e:
                print(f"# torch causal SDPA: {e!r}")
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

    def fwd_bwd(prefix, suffix=""):
        """our forward + backward figure (ms, FLOPs) of rows PREFIX_fwdSUFFIX and PREFIX_bwdSUFFIX"""
        f, b = ours.get(f"{prefix}_fwd{suffix}"), ours.get(f"{prefix}_bwd{suffix}")
        return (f[0] + b[0], f[1] + b[1]) if f and b else None

    def ms_of(figure):
        return figure[0] if figure else None

    rows = [
        (label("inbatch_fwd", "inbatch fwd"), ours.get("inbatch_fwd"), peer.get("inbatch_fwd"), "naive torch bf16"),
        (label("inbatch_fwd", "inbatch fwd+bwd"), fwd_bwd("inbatch"), peer.get("inbatch_fwd_bwd"),
         "naive torch bf16 autograd"),
        (label("inbatch_fwd", "inbatch f32 fwd+bwd"), fwd_bwd("inbatch", "_f32"), ms_of(fwd_bwd("inbatch")),
         "peer column: ours bf16 (tensor cores)"),
        (label("inbatch_fwd", "causal fwd"), ours.get("causal_fwd"), peer.get("causal_fwd"), "torch SDPA bf16"),
        (label("inbatch_fwd", "causal fwd+bwd"), fwd_bwd("causal"), peer.get("causal_fwd_bwd"),
         "torch SDPA bf16 autograd"),
        (label("inbatch_fwd", "causal f32 fwd+bwd"), fwd_bwd("causal", "_f32"), ms_of(fwd_bwd("causal")),
         "peer column: ours bf16 (tensor cores)"),
        (label("sgemm_search_f32", "sgemm f32"), ours.get("sgemm_search_f32"), peer.get("sgemm_search_f32"),
         "torch fp32, TF32 off"),
        (label("gemm_search_bf16", "gemm bf16"), ours.get("gemm_search_bf16"), peer.get("gemm_search_bf16"),
         "torch bf16"),
        (label("gemm_mlp_up_bf16", "gemm bf16 MLP-up"), ours.get("gemm_mlp_up_bf16"), peer.get("gemm_mlp_up_bf16"),
         "torch bf16"),
    ]
    lines = [f"{'op':46} {'ours ms':>10} {'torch ms':>10} {'torch/ours':>10} {'ours TF/s':>9}  peer",
             "-" * 100]
    for name, mine, theirs, what in rows:
        ms = mine[0] if mine else None
        tf = f"{mine[1] / (mine[0] * 1e-3) / 1e12:9.1f}" if mine else f"{'n/a':>9}"
        ratio = f"{theirs / ms:10.2f}" if (ms and theirs) else f"{'n/a':>10}"
        lines.append(f"{name:46} {cell(ms)} {cell(theirs)} {ratio} {tf}  {what}")
    if mem_rows:
        lines.append(f"{'memory':46} {'ours MiB':>10} {'ref MiB':>10} {'ref/ours':>10}")
    for name, mine, theirs, what in mem_rows:
        ratio = f"{theirs / mine:10.1f}" if (mine and theirs) else f"{'n/a':>10}"
        lines.append(f"{name:46} {cell(mine)} {cell(theirs)} {ratio} {'':9}  {what}")
    if "check" in peer:
        lines.append(f"in-batch results vs torch fp32 autograd (out, dq, dk, dv, dW): {peer['check']}")
    table = "\n".join(lines)
    print(table)
    with open(f"{d}/table.txt", "w") as f:
        f.write(table + "\n")
    return 1 if failed else 0


try:
    import torch
    HAVE_TORCH_ANY = True
    HAVE_TORCH = torch.cuda.is_available()
    WHY_NO_TORCH = "" if HAVE_TORCH else "torch.cuda.is_available() is False"
except ImportError as e:
    HAVE_TORCH_ANY = HAVE_TORCH = False
    WHY_NO_TORCH = str(e)

if __name__ == "__main__":
    sys.exit(main())
