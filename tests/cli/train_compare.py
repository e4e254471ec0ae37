#!/usr/bin/env python3
"""train_compare.py — compare two rv-train output directories (the CLI tests'
independent reader: JSON and safetensors parsed here, not by our C code).

    train_compare.py GOT REF [--lines N] [--loss-tol X] [--norm-tol X]
                     [--w-tol X] [--adapter-tol X] [--no-adapters | --no-log]

log.jsonl: the first N lines (both must have them; default: all, and GOT as
many lines as REF):
same step numbers, keys and lr; loss and loss_plain within --loss-tol
relative, grad_norm within --norm-tol relative, mean_max_w and w_entropy
within --w-tol absolute. Adapters (unless --no-adapters): both
adapter_model.safetensors and checkpoint/state.safetensors hold the same
tensor names, dtypes and shapes; every F32 adapter tensor's
max |got - ref| / max |ref| <= --adapter-tol.
Prints "ok LOSS_REL ADAPTER_REL" (the worst relative differences seen) or
"bad: ..." with the first problems; exit status 0 either way (the shell
test decides from the word).
"""
import argparse
import json
import os
import struct


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = (v["dtype"], v["shape"], data[a:b])
    return out


def compare_logs(got_dir, ref_dir, args, bad):
    got = [json.loads(line) for line in open(os.path.join(got_dir, "log.jsonl"))]
    ref = [json.loads(line) for line in open(os.path.join(ref_dir, "log.jsonl"))]
    n = args.lines if args.lines else len(ref)
    if len(got) < n or len(ref) < n or (not args.lines and len(got) != len(ref)):
        bad.append("log lines: got %d, ref %d, expected %d" % (len(got), len(ref), n))
    worst = 0.0
    for g, r in zip(got[:n], ref[:n]):
        if set(g) != set(r) or g["step"] != r["step"] or g["lr"] != r["lr"]:
            bad.append("step %s: keys, step or lr differ" % r["step"])
            continue
        for key, tol in (("loss", args.loss_tol), ("loss_plain", args.loss_tol), ("grad_norm", args.norm_tol)):
            e = abs(g[key] - r[key]) / max(abs(r[key]), 1e-30)
            if key == "loss":
                worst = max(worst, e)
            if not e <= tol:
                bad.append("step %d %s %.9g vs %.9g (rel %.3g > %g)" % (r["step"], key, g[key], r[key], e, tol))
        for key in ("mean_max_w", "w_entropy"):
            if not abs(g[key] - r[key]) <= args.w_tol:
                bad.append("step %d %s %.9g vs %.9g" % (r["step"], key, g[key], r[key]))
    return worst


def compare_adapters(got_dir, ref_dir, args, bad):
    worst = 0.0
    for rel in ("retriever/adapter_model.safetensors", "lm/adapter_model.safetensors",
                "checkpoint/state.safetensors"):
        g = load_safetensors(os.path.join(got_dir, rel))
        r = load_safetensors(os.path.join(ref_dir, rel))
        if {k: v[:2] for k, v in g.items()} != {k: v[:2] for k, v in r.items()}:
            bad.append(rel + ": tensor names, dtypes or shapes differ")
            continue
        if rel.startswith("checkpoint"):
            continue
        for k in sorted(r):
            if r[k][0] != "F32":
                bad.append("%s: %s is %s" % (rel, k, r[k][0]))
                continue
            n = len(r[k][2]) // 4
            gv, rv = struct.unpack("<%df" % n, g[k][2]), struct.unpack("<%df" % n, r[k][2])
            den = max(max(abs(x) for x in rv), 1e-30)
            e = max(abs(x - y) for x, y in zip(gv, rv)) / den
            worst = max(worst, e)
            if not e <= args.adapter_tol:
                bad.append("%s %s rel %.3g > %g" % (rel, k, e, args.adapter_tol))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("got")
    ap.add_argument("ref")
    ap.add_argument("--lines", type=int, default=0)
    ap.add_argument("--loss-tol", type=float, default=1e-5)
    ap.add_argument("--norm-tol", type=float, default=1e-4)
    ap.add_argument("--w-tol", type=float, default=1e-5)
    ap.add_argument("--adapter-tol", type=float, default=1e-3)
    ap.add_argument("--no-adapters", action="store_true")
    ap.add_argument("--no-log", action="store_true")
    args = ap.parse_args()
    bad = []
    try:
        lw = 0.0 if args.no_log else compare_logs(args.got, args.ref, args, bad)
        aw = 0.0 if args.no_adapters else compare_adapters(args.got, args.ref, args, bad)
    except (OSError, ValueError, KeyError) as e:
        bad.append("%s: %s" % (type(e).__name__, e))
    print("bad: " + "; ".join(bad[:6]) if bad else "ok %.3g %.3g" % (lw, aw))


if __name__ == "__main__":
    main()
