#!/usr/bin/env python3
"""revela_torch.py — the Revela training step in PyTorch, built the way the
original Revela code builds it (shared/reference/revela-method.md §2.2, §3.5,
§4): Hugging Face transformers 4.45 Llama/Qwen2 modules, PEFT 0.13 LoRA on a
retriever body and on a causal LM (two separate model instances), and an LM
attention module that, in pass B, adds in-batch attention over the pass-A
K/V cache before o_proj by materialising the [B, B, H, L, L] logits and
probabilities (one softmax per chunk pair, key padding masked, V-norm
(A·V)/(A·‖V‖ + 1e-6), weighted by W), exactly as §4.4 describes the fork's
LlamaSdpaAttention. Written from the method text; no code of the fork is
used. It is the peer rv-train is checked and timed against.

Modes
  check FIXTURE.safetensors [--dtype fp64|fp32]
      Loads the tiny model, the batch and the JAX float64 goldens written by
      scripts/revela_reference.py (tests/fixtures/train/step_{llama,qwen2}
      .safetensors, layout in tests/fixtures/train/README.md) into HF modules
      + PEFT, runs the step for every variant, and prints one PASS/FAIL line
      per compared quantity (loss, S, W, dL/dW, every LoRA gradient of the
      retriever and of the LM) with its error: max |ours - golden| divided by
      max |golden| (by 1e-6 where the golden gradient is smaller everywhere,
      as tests/unit/test_train_step.c does). Limit 1e-4. Exit 1 on a FAIL.
  bench --model PATH --groups FILE.jsonl [options]
      Times the full optimiser step (retriever on passage and query views, LM
      pass A and pass B, backward, grad-norm clip 1.0, AdamW) on real
      checkpoints (Hugging Face directory, or a GGUF dequantised once by
      gguf-py into a cache directory), with groups from a Revela batch file
      (what rv-train --from-jsonl reads) tokenised with rv-train's rules (see
      Views), taken in rv-train's order (data_order()). Prints the median
      ms/step over --steps steps after --warmup-steps, and the peak RSS.
      Exit 3 when the process runs out of memory or passes --max-rss-mib.
      --device cuda runs it on the GPU (each step timed between
      torch.cuda.synchronize() calls; the peak device memory of torch's
      allocator is printed too); --dtype bf16 runs it the way the original
      runs under DeepSpeed bf16 (revela-method.md §3.5, §6): model and LoRA
      weights in bf16, no autocast, and fp32 master copies of the LoRA
      weights that the gradient clipping and AdamW work on.

Environment: python with torch, transformers==4.45.2, peft==0.13.2 (see
scripts/requirements-torch.txt and tests/ref/venv-torch.sh; torch 1.13
from Debian works: transformers then picks its eager attention class instead
of SDPA, and this file mirrors whichever one it picked).
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time

import torch
import torch.nn.functional as F

PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTN = {"q_proj", "k_proj", "v_proj", "o_proj"}
VNORM_EPS = 1e-6
TOL = 1e-4
GRAD_FLOOR = 1e-6
HERE = os.path.dirname(os.path.abspath(__file__))


def versions():
    import peft
    import transformers
    return f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"


# ------------------------------------------------------------ in-batch attention
def inbatch_attention(q, k_cache, v_cache, key_bias, W, v_norm, n_rep, repeat_kv):
    """C[i] = sum_j W[i,j] * vnorm(softmax_s(q_i k_j^T / sqrt(d) + pad_j) v_j).

    q: pass-B queries [B, H, L, d] (after RoPE); k_cache, v_cache: pass-A
    cache [B, Hkv, L, d] (K after RoPE, positions as stored, not re-rotated);
    key_bias: [B, L], 0 on real keys, the dtype's lowest value on padding.
    Every pair (i, j) is computed, i == j included (its weight is 0), with
    its own softmax over the key tokens of chunk j: the full [B, B, H, L, L]
    tensor is materialised, as in the original code."""
    d = q.shape[-1]
    kc = repeat_kv(k_cache, n_rep)                     # GQA repeat before the norms (method §11.5)
    vc = repeat_kv(v_cache, n_rep)
    logits = torch.matmul(q.unsqueeze(1), kc.unsqueeze(0).transpose(-1, -2)) / math.sqrt(d)   # [B,B,H,L,L]
    logits = logits + key_bias[None, :, None, None, :]
    a = F.softmax(logits, dim=-1, dtype=torch.float32).to(q.dtype)   # fp32 softmax, as HF does
    b = torch.matmul(a, vc.unsqueeze(0))               # [B,B,H,L,d]
    if v_norm:
        vn = torch.linalg.vector_norm(vc, dim=-1)      # [B,H,L]: ||V|| over head_dim per key token
        n = torch.matmul(a, vn.unsqueeze(0).unsqueeze(-1))   # [B,B,H,L,1] = sum_s A_s ||V_s||
        b = b / (n + VNORM_EPS)
    return torch.einsum("ij,ijhtd->ihtd", W, b)


def revela_attention_forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_value=None,
                             output_attentions=False, use_cache=False, cache_position=None,
                             position_embeddings=None, **kwargs):
    """The LM attention of transformers 4.45 (Llama and Qwen2 share this
    structure) plus in-batch attention when pass B has set
    self._revela_inbatch. Without it (pass A) the stock forward runs."""
    ib = getattr(self, "_revela_inbatch", None)
    if ib is None:
        return self._revela_stock_forward(hidden_states, attention_mask=attention_mask, position_ids=position_ids,
                                          past_key_value=past_key_value, output_attentions=output_attentions,
                                          use_cache=use_cache, cache_position=cache_position,
                                          position_embeddings=position_embeddings, **kwargs)
    mod = sys.modules[type(self).__module__]           # modeling_llama or modeling_qwen2
    bsz, q_len, _ = hidden_states.size()
    q = self.q_proj(hidden_states).view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
    k = self.k_proj(hidden_states).view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
    v = self.v_proj(hidden_states).view(bsz, q_len, self.num_key_value_heads, self.head_dim).transpose(1, 2)
    cos, sin = position_embeddings if position_embeddings is not None else self.rotary_emb(v, position_ids)
    q, k = mod.apply_rotary_pos_emb(q, k, cos, sin)
    if past_key_value is not None:                     # pass B builds a throwaway cache too (use_cache default)
        k, v = past_key_value.update(k, v, self.layer_idx, {"sin": sin, "cos": cos, "cache_position": cache_position})
    ks = mod.repeat_kv(k, self.num_key_value_groups)
    vs = mod.repeat_kv(v, self.num_key_value_groups)
    mask = attention_mask[:, :, :, : ks.shape[-2]] if attention_mask is not None else None
    drop = self.attention_dropout if self.training else 0.0
    if self.config._attn_implementation == "sdpa":
        out = F.scaled_dot_product_attention(q, ks, vs, attn_mask=mask, dropout_p=drop,
                                             is_causal=mask is None and q_len > 1)
    else:                                              # transformers' eager path
        w = torch.matmul(q, ks.transpose(2, 3)) / math.sqrt(self.head_dim)
        if mask is None:
            mask = torch.full((q_len, q_len), torch.finfo(w.dtype).min, dtype=w.dtype, device=w.device).triu(1)
        w = F.softmax(w + mask, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(F.dropout(w, p=drop, training=self.training), vs)
    W, k_cache, v_cache, key_bias, v_norm = ib
    out = out + inbatch_attention(q, k_cache, v_cache, key_bias, W, v_norm, self.num_key_value_groups,
                                  mod.repeat_kv)
    out = out.transpose(1, 2).contiguous().view(bsz, q_len, -1)
    return self.o_proj(out), None, past_key_value


def attention_modules(model):
    return [m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "o_proj")]


def patch_lm(lm):
    for m in attention_modules(lm):
        m._revela_stock_forward = m.forward
        m.forward = revela_attention_forward.__get__(m)
    return lm


# ------------------------------------------------------------ the step
def length_mask(lengths, L):
    return torch.arange(L)[None, :] < lengths[:, None]


def embed(retr, ids, lengths):
    """EOS pooling at len-1 (the mask comes from lengths: pad id == EOS) + L2 norm."""
    mask = length_mask(lengths, ids.shape[1])
    h = retr(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    e = h[torch.arange(ids.shape[0]), lengths - 1]
    return F.normalize(e, dim=-1)


def revela_step(retr, lm, batch, tau, v_norm, dual_loss=False):
    """Loss and intermediates of one micro-batch; gradients land in .grad
    after loss.backward(). batch: p/q/x ids [B, L] (long), p/q/x lengths [B]."""
    p = embed(retr, batch["p_ids"], batch["p_len"])
    q = embed(retr, batch["q_ids"], batch["q_len"])
    S = q @ p.T
    B = S.shape[0]
    Z = (S / tau).masked_fill(torch.eye(B, dtype=torch.bool), float("-inf"))
    W = F.softmax(Z, dim=-1)
    x_ids, x_len = batch["x_ids"], batch["x_len"]
    x_mask = length_mask(x_len, x_ids.shape[1])
    labels = x_ids.masked_fill(~x_mask, -100)          # pad -> -100; HF shifts by one inside
    # pass A: a plain causal forward whose cache (post-RoPE K, V of every
    # layer) stays in the graph; its own loss is computed and ignored unless
    # dual_loss (the original's option: loss = outB.loss + outA.loss)
    out_a = lm(input_ids=x_ids, attention_mask=x_mask.long(), labels=labels, use_cache=True,
               output_hidden_states=True)
    cache = out_a.past_key_values
    dtype = next(lm.parameters()).dtype
    key_bias = torch.zeros(x_mask.shape, dtype=dtype).masked_fill(~x_mask, torch.finfo(dtype).min)
    mods = attention_modules(lm)
    for l, m in enumerate(mods):
        k_l, v_l = cache[l]
        m._revela_inbatch = (W.to(dtype), k_l, v_l, key_bias, v_norm)
    try:
        out_b = lm(input_ids=x_ids, attention_mask=x_mask.long(), labels=labels)
    finally:
        for m in mods:
            m._revela_inbatch = None
    loss = out_b.loss + out_a.loss if dual_loss else out_b.loss
    return dict(loss=loss, S=S, W=W, q=q, p=p)


def lora_config(task, rank, alpha, dropout):
    from peft import LoraConfig, TaskType
    return LoraConfig(task_type=getattr(TaskType, task), r=rank, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=PROJ, bias="none")


def build_pair(retr_causal, lm_causal, rank, alpha, dropout):
    """The original EncoderModel.build: retriever = the causal LM's body
    (base_model, no head) + LoRA for feature extraction; LM = the causal LM
    + its own LoRA."""
    from peft import get_peft_model
    retr = get_peft_model(retr_causal.base_model, lora_config("FEATURE_EXTRACTION", rank, alpha, dropout))
    lm = get_peft_model(lm_causal, lora_config("CAUSAL_LM", rank, alpha, dropout))
    patch_lm(lm)
    return retr, lm


def lora_modules(peft_model):
    """{(layer, proj): LoRA-wrapped Linear} of a PEFT model."""
    out = {}
    for name, m in peft_model.named_modules():
        if hasattr(m, "lora_A") and hasattr(m, "base_layer"):
            parts = name.split(".")
            layer = int(parts[parts.index("layers") + 1])
            out[(layer, parts[-1])] = m
    return out


# ------------------------------------------------------------ check mode
def check(args):
    from safetensors import safe_open
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    dtype = {"fp64": torch.float64, "fp32": torch.float32}[args.dtype]
    with safe_open(args.fixture, "pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    variants = json.loads(meta["variants"])
    tag = f"{os.path.basename(args.fixture)}[{args.dtype}]"
    assert float(meta.get("vnorm_eps", VNORM_EPS)) == VNORM_EPS
    common = dict(vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], intermediate_size=cfg["ffn"],
                  num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                  num_key_value_heads=cfg["kv_heads"], rms_norm_eps=cfg["eps"], rope_theta=cfg["theta"],
                  tie_word_embeddings=cfg["tied"], eos_token_id=cfg["eos"], bos_token_id=cfg["bos"],
                  attention_dropout=0.0, max_position_embeddings=4096)
    assert cfg["hidden"] == cfg["heads"] * cfg["head_dim"], "head_dim must be hidden/heads for these configs"
    if cfg["arch"] == "llama":
        assert not cfg["qkv_bias"]
        hf_cfg, cls = LlamaConfig(rope_scaling=cfg["rope_scaling"], attention_bias=False, **common), LlamaForCausalLM
    else:
        assert cfg["arch"] == "qwen2" and cfg["qkv_bias"] and cfg["rope_scaling"] is None
        hf_cfg, cls = Qwen2Config(use_sliding_window=False, **common), Qwen2ForCausalLM

    def network(prefix):
        model = cls(hf_cfg).to(dtype)
        sd = {"model.embed_tokens.weight": t[prefix + "embed_tokens"], "model.norm.weight": t[prefix + "norm"]}
        for l in range(cfg["layers"]):
            p, h = f"{prefix}layers.{l}.", f"model.layers.{l}."
            sd[h + "input_layernorm.weight"] = t[p + "input_layernorm"]
            sd[h + "post_attention_layernorm.weight"] = t[p + "post_attention_layernorm"]
            for name in PROJ:
                sub = "self_attn." if name in ATTN else "mlp."
                sd[h + sub + name + ".weight"] = t[p + name + ".weight"]
                if p + name + ".bias" in t:
                    sd[h + sub + name + ".bias"] = t[p + name + ".bias"]
        if cfg["tied"]:
            sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
        elif prefix + "lm_head" in t:
            sd["lm_head.weight"] = t[prefix + "lm_head"]
        else:                                          # the retriever has no head; never used
            sd["lm_head.weight"] = torch.zeros(cfg["vocab"], cfg["hidden"])
        missing, unexpected = model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=False)
        missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
        assert not missing and not unexpected, (missing, unexpected)
        return model

    retr_c, lm_c = network("retr."), network("lm.")
    attn_impl = lm_c.config._attn_implementation
    retr, lm = build_pair(retr_c, lm_c, cfg["lora_rank"], cfg["lora_alpha"], 0.0)
    loras = {"retr.": lora_modules(retr), "lm.": lora_modules(lm)}
    for prefix, mods in loras.items():
        assert len(mods) == cfg["layers"] * len(PROJ), (prefix, len(mods))
        for (l, name), m in mods.items():
            key = f"{prefix}layers.{l}.{name}"
            with torch.no_grad():
                m.lora_A["default"].weight.copy_(t[key + ".lora_A"].to(dtype))
                m.lora_B["default"].weight.copy_(t[key + ".lora_B"].to(dtype))
            assert m.scaling["default"] == cfg["lora_alpha"] / cfg["lora_rank"]
    retr.train()
    lm.train()

    results = []

    def report(name, err, tol=TOL):
        ok = err <= tol and math.isfinite(err)
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} torch-check/{tag}/{name} max-rel-err {err:.3g}")

    def rel(got, ref, floor=0.0):
        got, ref = got.detach().double(), ref.double()
        assert got.shape == ref.shape, (got.shape, ref.shape)
        return ((got - ref).abs().max() / max(ref.abs().max().item(), floor)).item()

    # the RoPE frequencies HF derives from the config must be the reference's
    inv = lm_c.model.rotary_emb.inv_freq
    report("rope_inv_freq", rel(inv, t["rope.inv_freq"]), 1e-6)
    batch = {k: t["batch." + k].long() for k in ("p_ids", "q_ids", "x_ids", "p_len", "q_len", "x_len")}
    # labels built as the original does (ids, pad -> -100) must give the
    # fixture's shifted targets
    x_mask = length_mask(batch["x_len"], batch["x_ids"].shape[1])
    labels = batch["x_ids"].masked_fill(~x_mask, -100)
    shifted = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], 1)
    report("labels", 0.0 if torch.equal(shifted, t["batch.targets"].long()) else math.inf)
    params = [p for m in (retr, lm) for p in m.parameters() if p.requires_grad]
    for v in variants:
        name = v["name"]
        pre = f"out.{name}."
        for p in params:
            p.grad = None
        out = revela_step(retr, lm, batch, v["tau"], v["v_norm"], v.get("dual_loss", False))
        out["W"].retain_grad()
        out["loss"].backward()
        errs = {
            "loss": abs(out["loss"].item() - t[pre + "loss"].item()) / abs(t[pre + "loss"].item()),
            "q": rel(out["q"], t[pre + "q"]), "p": rel(out["p"], t[pre + "p"]),
            "S": rel(out["S"], t[pre + "S"]), "W": rel(out["W"], t[pre + "W"]),
            "dW": rel(out["W"].grad, t[pre + "dW"], GRAD_FLOOR),
        }
        for k, e in errs.items():
            report(f"{name}/{k}", e)
        for prefix, mods in loras.items():
            worst, where, n = 0.0, "", 0
            for (l, proj), m in sorted(mods.items()):
                for ab in ("A", "B"):
                    g = getattr(m, f"lora_{ab}")["default"].weight.grad
                    key = f"{pre}grad.{prefix}layers.{l}.{proj}.lora_{ab}"
                    e = rel(g if g is not None else torch.zeros_like(t[key]), t[key], GRAD_FLOOR)
                    n += 1
                    if not e <= worst:
                        worst, where = e, f"layers.{l}.{proj}.lora_{ab}"
            results.append(worst <= TOL)
            print(f"{'PASS' if worst <= TOL else 'FAIL'} torch-check/{tag}/{name}/grad.{prefix.rstrip('.')} "
                  f"max-rel-err {worst:.3g} over {n} LoRA tensors (worst {where or 'none: all exact'})")
    print(f"# {tag}: {versions()}, LM attention class {attn_impl}, LoRA by PEFT", file=sys.stderr)
    return 0 if all(results) else 1


# ------------------------------------------------------------ bench mode
def splitmix64(state):
    state[0] = (state[0] + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = state[0]
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def data_order(n, seed, epoch):
    """rv-train's group order (lib/train_data.c rv_train_data_order)."""
    state = [(seed ^ ((0xD1B54A32D192ED03 * (epoch + 1)) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF]
    perm = list(range(n))
    for i in range(n, 1, -1):
        j = splitmix64(state) % i
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    return perm


def load_groups(path):
    """Revela batch file: per line a JSON list of chunk texts or {"src", "text"};
    groups under 2 chunks are skipped (as rv-train does)."""
    groups = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            v = json.loads(line)
            src, texts = ("", v) if isinstance(v, list) else (v.get("src", ""), v.get("text"))
            if not isinstance(texts, list) or not all(isinstance(x, str) for x in texts):
                sys.exit(f"revela_torch: {path}:{lineno}: expected a JSON list of chunk texts or "
                         '{"src": string, "text": [..]}')
            if len(texts) >= 2:
                groups.append((src, texts))
    return groups


class Views:
    """rv-train's tokenisation (lib/forward_encode.c rv_encode_tokenize,
    lib/train_data.c rv_train_batch_build): strip(prefix + strip(text)),
    the tokenizer's template (BOS where it adds one), text cut from the end
    to max_len - 1 tokens with the template, EOS appended; the query view
    keeps int(0.5 n) of the n tokens before EOS (not for src stackoverflow
    or --first-half off); the LM view has no prefix and no EOS. All three
    views are padded with EOS to the longest view of the group."""

    def __init__(self, retr_dir, lm_dir, retr_eos, lm_eos, max_len, first_half):
        from tokenizers import Tokenizer
        self.rtok = Tokenizer.from_file(os.path.join(retr_dir, "tokenizer.json"))
        self.ltok = self.rtok if lm_dir == retr_dir else Tokenizer.from_file(os.path.join(lm_dir, "tokenizer.json"))
        for t in {id(self.rtok): self.rtok, id(self.ltok): self.ltok}.values():
            t.no_padding()
            t.enable_truncation(max_length=max_len - 1)   # HF truncation keeps the template tokens
        self.reos, self.leos, self.first_half = retr_eos, lm_eos, first_half

    @staticmethod
    def ids(tok, prefix, text, eos):
        return tok.encode((prefix + text.strip()).strip(), add_special_tokens=True).ids + [eos]

    def batch(self, src, texts):
        half = self.first_half and src != "stackoverflow"
        p, q, x = [], [], []
        for t in texts:
            p.append(self.ids(self.rtok, "passage: ", t, self.reos))
            qi = self.ids(self.rtok, "query: ", t, self.reos)
            q.append(qi[: (len(qi) - 1) // 2] + [self.reos] if half else qi)
            xi = self.ids(self.ltok, "", t, self.leos)[:-1]
            if not xi:
                sys.exit("revela_torch: empty LM view")
            x.append(xi)
        L = max(len(v) for v in p + q + x)

        def pad(views, eos):
            return (torch.tensor([v + [eos] * (L - len(v)) for v in views], dtype=torch.long),
                    torch.tensor([len(v) for v in views], dtype=torch.long))
        b = {}
        (b["p_ids"], b["p_len"]), (b["q_ids"], b["q_len"]) = pad(p, self.reos), pad(q, self.reos)
        b["x_ids"], b["x_len"] = pad(x, self.leos)
        return b, L


def hf_dir(path, what):
    """A Hugging Face directory for path; a GGUF is dequantised once by
    gguf-py (scripts/make-model-fixtures.py --gguf-to-hf) into the cache."""
    if os.path.isdir(path):
        return path
    if not path.endswith(".gguf"):
        sys.exit(f"revela_torch: {what} {path}: expected a Hugging Face directory or a .gguf file")
    cache = os.environ.get("RV_CACHE") or os.path.join(HERE, "..", ".cache")
    out = os.path.join(cache, "models", os.path.basename(path)[:-5] + "-hf")
    if not os.path.exists(os.path.join(out, "model.safetensors")):
        print(f"revela_torch: dequantising {path} into {out} (gguf-py, float32)", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(HERE, "make-model-fixtures.py"), "--gguf-to-hf", path, out],
                       check=True, stdout=subprocess.DEVNULL)
    else:
        print(f"revela_torch: using {out}, dequantised from {path} by gguf-py", file=sys.stderr)
    return out


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_guard(limit_mib, where, floor_mib=1024):
    """Exits the process (status 3) as soon as its RSS passes limit_mib, or
    the machine's available memory falls under floor_mib (it is shared), so
    that a peer too large for the machine reports itself instead of being
    killed by the kernel (or getting other processes killed)."""
    def watch():
        while True:
            r, avail = rss_mib(), mem_available_mib()
            if r > limit_mib or avail < floor_mib:
                why = (f"RSS {r:.0f} MiB passed the limit {limit_mib:.0f} MiB" if r > limit_mib else
                       f"RSS {r:.0f} MiB, the machine has under {floor_mib} MiB left")
                sys.stdout.write(f"revela_torch: out of memory: {why} during {where[0]}\n")
                sys.stdout.flush()
                os._exit(3)
            time.sleep(0.02)
    threading.Thread(target=watch, daemon=True).start()


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


class Bf16Master:
    """DeepSpeed's bf16 optimiser as the original runs it: the LoRA weights
    the model computes with are bf16; fp32 master copies hold the values
    the optimiser updates. Per step: bf16 gradients -> fp32, global-norm
    clip, AdamW on the masters, masters rounded back into the bf16 weights."""

    def __init__(self, params, **adamw):
        self.params = params
        self.masters = [p.detach().float().clone().requires_grad_(True) for p in params]
        self.opt = torch.optim.AdamW(self.masters, **adamw)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None
        for m in self.masters:
            m.grad = None

    def clip_and_step(self, max_norm):
        for m, p in zip(self.masters, self.params):
            m.grad = p.grad.float() if p.grad is not None else torch.zeros_like(m)
        torch.nn.utils.clip_grad_norm_(self.masters, max_norm)
        self.opt.step()
        with torch.no_grad():
            for m, p in zip(self.masters, self.params):
                p.copy_(m)


def bench(args):
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("revela_torch: --device cuda: torch sees no CUDA device")
    limit = args.max_rss_mib or 0.9 * mem_available_mib()
    where = ["model loading"]
    memory_guard(limit, where)
    rdir = hf_dir(args.model, "--model")
    ldir = hf_dir(args.lm, "--lm") if args.lm else rdir
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    # two separate instances even for one checkpoint, as the original builds them
    retr_c = AutoModelForCausalLM.from_pretrained(rdir, torch_dtype=dtype).to(dev)
    lm_c = AutoModelForCausalLM.from_pretrained(ldir, torch_dtype=dtype).to(dev)
    if dev.type != "cpu":
        # revela_step and Views build their index and mask tensors with
        # default-device factories (torch >= 2.0)
        torch.set_default_device(dev)

    def eos(m):
        e = m.config.eos_token_id
        return e[0] if isinstance(e, list) else e
    views = Views(rdir, ldir, eos(retr_c), eos(lm_c), args.max_len, args.first_half == "on")
    retr, lm = build_pair(retr_c, lm_c, args.lora_rank, args.lora_alpha or 2.0 * args.lora_rank, args.lora_dropout)
    if dtype != torch.float32:   # PEFT made the adapters fp32; DeepSpeed's engine casts the whole module
        retr.to(dtype)
        lm.to(dtype)
    retr.train()
    lm.train()
    attn_impl = lm_c.config._attn_implementation
    params = [p for m in (retr, lm) for p in m.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    adamw = dict(lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    master = Bf16Master(params, **adamw) if dtype != torch.float32 else None
    opt = master if master else torch.optim.AdamW(params, **adamw)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    groups = load_groups(args.groups)
    if not groups:
        sys.exit(f"revela_torch: {args.groups}: no group with at least 2 chunks")

    def order():
        epoch = 0
        while True:
            for i in data_order(len(groups), args.seed, epoch):
                yield groups[i]
            epoch += 1
    it = order()
    times, shapes = [], []
    total = args.warmup_steps + args.steps
    for step in range(1, total + 1):
        src, texts = next(it)
        where[0] = f"step {step} (B={len(texts)})"
        sync()
        t0 = time.perf_counter()
        try:
            batch, L = views.batch(src, texts)
            opt.zero_grad(set_to_none=True)
            out = revela_step(retr, lm, batch, args.tau, args.v_norm)
            out["loss"].backward()
            if master:
                master.clip_and_step(1.0)
            else:
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
            sync()
        except (RuntimeError, MemoryError) as e:
            if isinstance(e, MemoryError) or "alloc" in str(e).lower() or "memory" in str(e).lower():
                print(f"revela_torch: out of memory during {where[0]}: {str(e).splitlines()[0][:200]}")
                sys.stdout.flush()
                os._exit(3)
            raise
        ms = (time.perf_counter() - t0) * 1000
        shapes.append((len(texts), L))
        # tokens counted as rv-train's log does (p + q views, the LM view twice)
        ntok = int(batch["p_len"].sum() + batch["q_len"].sum() + 2 * batch["x_len"].sum())
        print(f"revela_torch: step {step}/{total} B={len(texts)} L={L} tokens {ntok} loss {out['loss'].item():.7f} "
              f"{ms:.1f} ms"
              f"{' (warm-up)' if step <= args.warmup_steps else ''}", file=sys.stderr)
        if step > args.warmup_steps:
            times.append(ms)
        del out, batch
    times.sort()
    med = times[(len(times) - 1) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    where_run = f"threads {args.threads}"
    if dev.type == "cuda":
        where_run = (f"device {torch.cuda.get_device_name(dev)}, peak device memory "
                     f"{torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB allocated "
                     f"({torch.cuda.max_memory_reserved(dev) / 2**20:.0f} MiB reserved)")
    Ls = sorted({L for _, L in shapes[args.warmup_steps:]})
    print(f"torch-peer: median {med:.1f} ms/step over {len(times)} steps after {args.warmup_steps} warm-up, "
          f"peak RSS {peak:.0f} MiB; B={','.join(sorted({str(b) for b, _ in shapes}))} L={','.join(map(str, Ls))} "
          f"r={args.lora_rank} {n_params} LoRA parameters, {where_run}; {versions()}, "
          f"LM attention class {attn_impl}, {str(dtype).replace('torch.', '')}"
          f"{' (fp32 master weights)' if master else ''}; model {rdir}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("check", help="compare with the JAX goldens of a step fixture")
    c.add_argument("fixture")
    c.add_argument("--dtype", choices=["fp64", "fp32"], default="fp64")
    b = sub.add_parser("bench", help="time the training step on real checkpoints")
    b.add_argument("--model", required=True, help="retriever (HF directory or .gguf)")
    b.add_argument("--lm", help="language model (default: --model, as a second instance)")
    b.add_argument("--groups", required=True, help="Revela batch file (JSONL), as rv-train --from-jsonl")
    b.add_argument("--lora-rank", type=int, default=64)
    b.add_argument("--lora-alpha", type=float, help="default 2 x rank")
    b.add_argument("--lora-dropout", type=float, default=0.0,
                   help="PEFT's lora_dropout on every adapter's input (the paper's runs: 0.1; default 0)")
    b.add_argument("--max-len", type=int, default=157)
    b.add_argument("--tau", type=float, default=1e-4)
    b.add_argument("--no-v-norm", dest="v_norm", action="store_false")
    b.add_argument("--first-half", choices=["on", "off"], default="on")
    b.add_argument("--seed", type=int, default=42, help="group order, as rv-train --seed")
    b.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (constant)")
    b.add_argument("--threads", type=int, default=os.cpu_count())
    b.add_argument("--steps", type=int, default=3)
    b.add_argument("--warmup-steps", type=int, default=1)
    b.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    b.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                   help="fp32 (default), or bf16 as the original under DeepSpeed (fp32 master LoRA weights)")
    b.add_argument("--max-rss-mib", type=float, help="stop with status 3 above this RSS (default 90%% of "
                                                         "MemAvailable at start)")
    args = ap.parse_args()
    if args.mode == "check":
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        return check(args)
    if args.max_len < 3 or args.steps < 1 or args.lora_rank < 1:
        ap.error("--max-len >= 3, --steps >= 1, --lora-rank >= 1")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
