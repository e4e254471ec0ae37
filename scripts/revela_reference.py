#!/usr/bin/env python3
"""revela_reference.py — an independent reference of one Revela training step,
written from the equations in shared/reference/revela-method.md (§2.2, §3.5,
§4), used only to generate the golden fixtures under tests/fixtures/train/.

It builds tiny LLaMA/Qwen2-style decoders (RMSNorm, RoPE with optional llama3
frequency scaling, GQA, optional q/k/v bias, SwiGLU, tied or untied LM head),
puts PEFT-style LoRA (y = W x + b + (alpha/r) B A x, dropout p = 0) on
q,k,v,o,gate,up,down of a retriever body and of an LM, and computes in float64:

  retriever:  p = l2n(eos_pool(body("passage" ids))), q = l2n(eos_pool(body("query" ids)))
  S = q p^T;  W = softmax_row(S / tau with the diagonal at -inf)
  LM pass A:  causal forward, keeping every layer's post-RoPE K and V (not detached)
  LM pass B:  causal forward where every layer adds, per head and before o_proj,
              C_i = sum_j W_ij * vnorm(softmax_s(Q_i K_j^T / sqrt(d) + keypad_j) V_j)
              (one non-causal softmax per chunk pair (i, j); pass-B queries,
              pass-A keys/values; vnorm(b) = b / (sum_s A_s ||V_s|| + 1e-6))
  loss = token-mean next-token cross-entropy of pass B

and with JAX autodiff the gradients w.r.t. every LoRA A and B of both
networks, W and S. Inputs are token-id arrays with lengths (no tokenizer).
Weights are drawn in float32 (what the C side reads) and promoted to float64
for the computation; outputs are stored in float32 (loss in float64).

Output (safetensors, layout in tests/fixtures/train/README.md):
  tests/fixtures/train/step_llama.safetensors   llama3 RoPE scaling, GQA 4/2, tied head
  tests/fixtures/train/step_qwen2.safetensors   q/k/v bias, GQA 6/2, untied head
  tests/fixtures/train/ops.safetensors          per-op goldens: in-batch attention, bf16 W

Environment (own venv, fixture generation only; never needed by the tests):
  python3 -m venv /tmp/rvtrain-venv
  /tmp/rvtrain-venv/bin/pip install jax==0.10.2 jaxlib==0.10.2 numpy==2.4.6 \
      safetensors==0.8.0 ml_dtypes==0.6.0
  /tmp/rvtrain-venv/bin/python scripts/revela_reference.py [OUTDIR]
"""
import json
import math
import os
import sys

import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VNORM_EPS = 1e-6

CONFIGS = {
    "llama": dict(arch="llama", vocab=80, hidden=32, layers=2, heads=4, kv_heads=2, head_dim=8, ffn=48,
                  eps=1e-5, theta=10000.0,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                    high_freq_factor=4.0, original_max_position_embeddings=1024),
                  qkv_bias=False, tied=True, bos=1, eos=79,
                  lora_rank=4, lora_alpha=2.0, batch=4, seq_len=12,
                  x_len=[12, 9, 5, 11], p_len=[11, 8, 12, 6], q_len=[6, 4, 7, 3], seed=1234),
    "qwen2": dict(arch="qwen2", vocab=72, hidden=48, layers=2, heads=6, kv_heads=2, head_dim=8, ffn=64,
                  eps=1e-6, theta=1000000.0, rope_scaling=None,
                  qkv_bias=True, tied=False, bos=None, eos=71,
                  lora_rank=3, lora_alpha=1.5, batch=4, seq_len=10,
                  x_len=[7, 10, 4, 9], p_len=[10, 5, 9, 8], q_len=[5, 3, 5, 4], seed=4321),
}
# (name, tau, v_norm): moderate tau so that W is not one-hot and the gradient
# through W is non-trivial, plus the paper's tau = 1e-4 (W near one-hot).
# (name, tau, v_norm, dual_loss)
VARIANTS = [("vnorm", 0.1, True, False), ("plain", 0.1, False, False), ("sharp", 1e-4, True, False),
            ("dual", 0.1, True, True)]


# ----------------------------------------------------------------- weights
def rope_inv_freq(cfg):
    """head_dim/2 inverse frequencies (transformers' default and llama3 rules)."""
    d = cfg["head_dim"]
    inv = 1.0 / (cfg["theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d))
    rs = cfg["rope_scaling"]
    if rs is not None:
        assert rs["rope_type"] == "llama3"
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv.astype(np.float32)


def proj_shape(cfg, name):
    """(out, in) of a projection."""
    D, H, Hkv, d, F = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["head_dim"], cfg["ffn"]
    return {"q_proj": (H * d, D), "k_proj": (Hkv * d, D), "v_proj": (Hkv * d, D), "o_proj": (D, H * d),
            "gate_proj": (F, D), "up_proj": (F, D), "down_proj": (D, F)}[name]


def make_network(cfg, rng, prefix, with_head):
    """Frozen base weights and LoRA weights of one network, float32."""
    f32 = np.float32
    base, lora = {}, {}
    D = cfg["hidden"]
    base[prefix + "embed_tokens"] = rng.normal(0, 0.3, (cfg["vocab"], D)).astype(f32)
    for l in range(cfg["layers"]):
        p = f"{prefix}layers.{l}."
        base[p + "input_layernorm"] = (1 + 0.2 * rng.normal(size=D)).astype(f32)
        base[p + "post_attention_layernorm"] = (1 + 0.2 * rng.normal(size=D)).astype(f32)
        for name in PROJ:
            out, inp = proj_shape(cfg, name)
            base[p + name + ".weight"] = rng.normal(0, 1.0 / math.sqrt(inp), (out, inp)).astype(f32)
            if cfg["qkv_bias"] and name in ("q_proj", "k_proj", "v_proj"):
                base[p + name + ".bias"] = rng.normal(0, 0.3, out).astype(f32)
            r = cfg["lora_rank"]
            # PEFT init of A: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)).
            # B is small and non-zero here (PEFT starts it at 0), so that every
            # gradient is exercised.
            bound = 1.0 / math.sqrt(inp)
            lora[p + name + ".lora_A"] = rng.uniform(-bound, bound, (r, inp)).astype(f32)
            lora[p + name + ".lora_B"] = rng.normal(0, 0.2, (out, r)).astype(f32)
    base[prefix + "norm"] = (1 + 0.2 * rng.normal(size=D)).astype(f32)
    if with_head and not cfg["tied"]:
        base[prefix + "lm_head"] = rng.normal(0, 1.0 / math.sqrt(D), (cfg["vocab"], D)).astype(f32)
    return base, lora


def make_ids(cfg, rng, lengths, add_bos, append_eos):
    """[B, L] int32 ids: optional BOS, random text ids, optional EOS at len-1, EOS padding."""
    B, L, V = cfg["batch"], cfg["seq_len"], cfg["vocab"]
    ids = np.full((B, L), cfg["eos"], dtype=np.int32)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(2, V - 1, n)
        if add_bos and cfg["bos"] is not None:
            ids[b, 0] = cfg["bos"]
        if append_eos:
            ids[b, n - 1] = cfg["eos"]
    return ids


# ----------------------------------------------------------------- model
def rmsnorm(x, w, eps):
    return x / jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w


def linear(x, base, lora, name, scale):
    y = x @ base[name + ".weight"].T
    if name + ".bias" in base:
        y = y + base[name + ".bias"]
    return y + scale * ((x @ lora[name + ".lora_A"].T) @ lora[name + ".lora_B"].T)


def rope(x, inv_freq):
    """x: [B, L, heads, d]; rotate_half convention (pairs i, i + d/2), positions 0..L-1."""
    L, d = x.shape[1], x.shape[3]
    ang = jnp.arange(L, dtype=jnp.float64)[:, None] * inv_freq[None, :]
    cos, sin = jnp.cos(ang)[None, :, None, :], jnp.sin(ang)[None, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def repeat_kv(t, n_rep):
    """[B, L, Hkv, d] -> [B, L, H, d]: query head h reads kv head h // n_rep."""
    return jnp.repeat(t, n_rep, axis=2)


def key_mask(lengths, L):
    return jnp.arange(L)[None, :] < jnp.asarray(lengths)[:, None]            # [B, L]


def self_attention(q, k, v, lengths):
    B, L, H, d = q.shape
    s = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(d)
    causal = jnp.arange(L)[:, None] >= jnp.arange(L)[None, :]
    mask = causal[None, None] & key_mask(lengths, L)[:, None, None, :]
    a = jax.nn.softmax(jnp.where(mask, s, -jnp.inf), axis=-1)
    return jnp.einsum("bhts,bshd->bthd", a, v)


def inbatch_attention(q, k, v, lengths, W, v_norm):
    """q: pass-B queries [B,L,H,d]; k, v: pass-A cache already repeated to H heads.
    Materialises the full [B,B,H,L,L] tensor (fine at this size; the C op must not)."""
    B, L, H, d = q.shape
    logit = jnp.einsum("ithd,jshd->ijhts", q, k) / math.sqrt(d)
    logit = jnp.where(key_mask(lengths, L)[None, :, None, None, :], logit, -jnp.inf)
    a = jax.nn.softmax(logit, axis=-1)                                       # separate softmax per pair
    b = jnp.einsum("ijhts,jshd->ijthd", a, v)
    if v_norm:
        vn = jnp.sqrt(jnp.sum(v * v, axis=-1))                               # [B, L, H]
        n = jnp.einsum("ijhts,jsh->ijth", a, vn)
        b = b / (n[..., None] + VNORM_EPS)
    return jnp.einsum("ij,ijthd->ithd", W, b)


def decoder(cfg, base, lora, prefix, ids, lengths, inv_freq, inbatch=None):
    """Runs the decoder body. Returns the final-normed hidden states and the
    per-layer post-RoPE (K, V) with kv heads. inbatch = (W, [(K, V)] of pass A, v_norm)."""
    B, L = ids.shape
    H, Hkv, d = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    scale = cfg["lora_alpha"] / cfg["lora_rank"]
    x = base[prefix + "embed_tokens"][ids]
    cache = []
    for l in range(cfg["layers"]):
        p = f"{prefix}layers.{l}."
        u = rmsnorm(x, base[p + "input_layernorm"], cfg["eps"])
        q = rope(linear(u, base, lora, p + "q_proj", scale).reshape(B, L, H, d), inv_freq)
        k = rope(linear(u, base, lora, p + "k_proj", scale).reshape(B, L, Hkv, d), inv_freq)
        v = linear(u, base, lora, p + "v_proj", scale).reshape(B, L, Hkv, d)
        cache.append((k, v))
        o = self_attention(q, repeat_kv(k, H // Hkv), repeat_kv(v, H // Hkv), lengths)
        if inbatch is not None:
            W, kv_a, v_norm = inbatch
            ka, va = kv_a[l]
            o = o + inbatch_attention(q, repeat_kv(ka, H // Hkv), repeat_kv(va, H // Hkv), lengths, W, v_norm)
        x = x + linear(o.reshape(B, L, H * d), base, lora, p + "o_proj", scale)
        u2 = rmsnorm(x, base[p + "post_attention_layernorm"], cfg["eps"])
        g = linear(u2, base, lora, p + "gate_proj", scale)
        up = linear(u2, base, lora, p + "up_proj", scale)
        x = x + linear(jax.nn.silu(g) * up, base, lora, p + "down_proj", scale)
    return rmsnorm(x, base[prefix + "norm"], cfg["eps"]), cache


def encode(cfg, base, lora, ids, lengths, inv_freq):
    """EOS pooling (row len-1) and L2 normalisation (F.normalize, eps 1e-12)."""
    h, _ = decoder(cfg, base, lora, "retr.", ids, lengths, inv_freq)
    e = h[jnp.arange(ids.shape[0]), jnp.asarray(lengths) - 1]
    return e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)


def lm_targets(ids, lengths):
    """targets[b, t] = ids[b, t+1] when t+1 < len_b, else -100 (labels shifted by one)."""
    B, L = ids.shape
    tgt = np.full((B, L), -100, dtype=np.int32)
    for b, n in enumerate(lengths):
        tgt[b, : n - 1] = ids[b, 1:n]
    return tgt


def similarity_weights(S, tau):
    B = S.shape[0]
    Z = jnp.where(jnp.eye(B, dtype=bool), -jnp.inf, S / tau)
    return jax.nn.softmax(Z, axis=-1)


def token_mean_ce(cfg, base, h, targets):
    head = base["lm.embed_tokens"] if cfg["tied"] else base["lm.lm_head"]
    logp = jax.nn.log_softmax(h @ head.T, axis=-1)
    valid = targets >= 0
    picked = jnp.take_along_axis(logp, jnp.where(valid, targets, 0)[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(valid, picked, 0.0)) / jnp.sum(valid)


def lm_loss(cfg, base, lora, x_ids, x_len, targets, inv_freq, W, v_norm, dual=False):
    """CE of pass B; with dual (the reference's unused dual_loss option) plus pass A's own CE."""
    h_a, kv_a = decoder(cfg, base, lora, "lm.", x_ids, x_len, inv_freq)                        # pass A
    h, _ = decoder(cfg, base, lora, "lm.", x_ids, x_len, inv_freq, inbatch=(W, kv_a, v_norm))  # pass B
    loss = token_mean_ce(cfg, base, h, targets)
    return loss + token_mean_ce(cfg, base, h_a, targets) if dual else loss


def plain_lm_step(cfg, base, lora, batch, inv_freq):
    """rv-train --objective lm: token-mean CE of one causal pass over x, and its
    gradients w.r.t. the LM's LoRA factors and every LM base tensor."""
    targets = lm_targets(batch["x_ids"], batch["x_len"])
    lm_base = {k: v for k, v in base.items() if k.startswith("lm.")}

    def f(ll, lb):
        h, _ = decoder(cfg, {**base, **lb}, ll, "lm.", batch["x_ids"], batch["x_len"], inv_freq)
        return token_mean_ce(cfg, {**base, **lb}, h, targets)
    return jax.value_and_grad(f, argnums=(0, 1))(lora, lm_base)


def revela_step(cfg, base, lora_r, lora_l, batch, inv_freq, tau, v_norm, dual=False):
    """Loss, intermediates and gradients of one step (float64)."""
    def sim(lr):
        q = encode(cfg, base, lr, batch["q_ids"], batch["q_len"], inv_freq)
        p = encode(cfg, base, lr, batch["p_ids"], batch["p_len"], inv_freq)
        return q @ p.T, (q, p)

    S, vjp_sim, (q, p) = jax.vjp(sim, lora_r, has_aux=True)
    W, vjp_w = jax.vjp(lambda s: similarity_weights(s, tau), S)
    targets = lm_targets(batch["x_ids"], batch["x_len"])
    loss, (dW, d_lm) = jax.value_and_grad(
        lambda w, ll: lm_loss(cfg, base, ll, batch["x_ids"], batch["x_len"], targets, inv_freq, w, v_norm, dual),
        argnums=(0, 1))(W, lora_l)
    (dS,) = vjp_w(dW)
    (d_retr,) = vjp_sim(dS)
    out = dict(loss=loss, q=q, p=p, S=S, W=W, dW=dW, dS=dS, n_targets=int(np.sum(targets >= 0)))
    return out, d_retr, d_lm


# ----------------------------------------------------------------- fixtures
def as_f64(d):
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in d.items()}


def step_fixture(name, cfg, outdir):
    rng = np.random.default_rng(cfg["seed"])
    base_r, lora_r = make_network(cfg, rng, "retr.", with_head=False)
    base_l, lora_l = make_network(cfg, rng, "lm.", with_head=True)
    batch = {
        "p_ids": make_ids(cfg, rng, cfg["p_len"], add_bos=True, append_eos=True),
        "q_ids": make_ids(cfg, rng, cfg["q_len"], add_bos=True, append_eos=True),
        "x_ids": make_ids(cfg, rng, cfg["x_len"], add_bos=True, append_eos=False),
        "p_len": np.array(cfg["p_len"], dtype=np.int32),
        "q_len": np.array(cfg["q_len"], dtype=np.int32),
        "x_len": np.array(cfg["x_len"], dtype=np.int32),
    }
    inv_freq = rope_inv_freq(cfg)
    base = as_f64({**base_r, **base_l})
    tensors = {**base_r, **base_l, **lora_r, **lora_l, "rope.inv_freq": inv_freq}
    tensors.update({"batch." + k: v for k, v in batch.items()})
    tensors["batch.targets"] = lm_targets(batch["x_ids"], batch["x_len"])
    jbatch = {k: (jnp.asarray(v) if k.endswith("ids") else [int(t) for t in v]) for k, v in batch.items()}
    variants = []
    for vname, tau, v_norm, dual in VARIANTS:
        out, d_retr, d_lm = revela_step(cfg, base, as_f64(lora_r), as_f64(lora_l), jbatch,
                                        jnp.asarray(inv_freq, dtype=jnp.float64), tau, v_norm, dual)
        pre = f"out.{vname}."
        for k in ("loss",):
            tensors[pre + k] = np.array([float(out[k])], dtype=np.float64)
        for k in ("q", "p", "S", "W", "dW", "dS"):
            a = np.asarray(out[k])
            assert np.all(np.isfinite(a)), (name, vname, k)
            tensors[pre + k] = a.astype(np.float32)
        for grads in (d_retr, d_lm):
            for k, g in grads.items():
                g = np.asarray(g)
                assert np.all(np.isfinite(g)), (name, vname, k)
                tensors[pre + "grad." + k] = g.astype(np.float32)
        W = np.asarray(out["W"])
        off = W[~np.eye(cfg["batch"], dtype=bool)]
        print(f"{name}/{vname}: tau={tau} v_norm={v_norm} loss={float(out['loss']):.10f} "
              f"targets={out['n_targets']} W offdiag min={off.min():.3g} max={off.max():.3g} "
              f"|dS|max={np.abs(np.asarray(out['dS'])).max():.3g}")
        variants.append(dict(name=vname, tau=tau, v_norm=v_norm, dual_loss=dual, n_targets=out["n_targets"]))
    # the plain causal-LM step: LoRA and full-parameter gradients of the LM
    loss, (d_lora, d_base) = plain_lm_step(cfg, base, as_f64(lora_l), jbatch,
                                           jnp.asarray(inv_freq, dtype=jnp.float64))
    tensors["lmstep.loss"] = np.array([float(loss)], dtype=np.float64)
    for grads in (d_lora, d_base):
        for k, g in grads.items():
            g = np.asarray(g)
            assert np.all(np.isfinite(g)), (name, "lmstep", k)
            tensors["lmstep.grad." + k] = g.astype(np.float32)
    print(f"{name}/lmstep: loss={float(loss):.10f}")
    meta_cfg = {k: cfg[k] for k in ("arch", "vocab", "hidden", "layers", "heads", "kv_heads", "head_dim", "ffn",
                                    "eps", "theta", "rope_scaling", "qkv_bias", "tied", "bos", "eos",
                                    "lora_rank", "lora_alpha", "batch", "seq_len")}
    meta = {"config": json.dumps(meta_cfg), "variants": json.dumps(variants),
            "producer": "scripts/revela_reference.py", "vnorm_eps": repr(VNORM_EPS)}
    path = os.path.join(outdir, f"step_{name}.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


def bf16_round(x):
    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def ops_fixture(outdir):
    """Per-op goldens: in-batch attention (GQA, key padding, with and without
    V-norm, loss = sum(C * G)) and the bf16-emulating W softmax."""
    rng = np.random.default_rng(99)
    B, L, H, Hkv, d = 3, 7, 4, 2, 8
    lengths = np.array([7, 4, 6], dtype=np.int32)
    q = rng.normal(size=(B, L, H, d)).astype(np.float32)
    k = rng.normal(size=(B, L, Hkv, d)).astype(np.float32)
    v = rng.normal(size=(B, L, Hkv, d)).astype(np.float32)
    Wr = rng.uniform(0.1, 1.0, (B, B)) * (1 - np.eye(B))
    W = (Wr / Wr.sum(1, keepdims=True)).astype(np.float32)
    G = rng.normal(size=(B, L, H, d)).astype(np.float32)
    t = {"inbatch.q": q, "inbatch.k": k, "inbatch.v": v, "inbatch.w": W, "inbatch.g": G,
         "inbatch.lengths": lengths}
    for v_norm in (True, False):
        def f(q_, k_, v_, w_):
            c = inbatch_attention(q_, repeat_kv(k_, H // Hkv), repeat_kv(v_, H // Hkv), lengths, w_, v_norm)
            return jnp.sum(c * G), c
        (_, c), grads = jax.value_and_grad(f, argnums=(0, 1, 2, 3), has_aux=True)(
            *(jnp.asarray(a, dtype=jnp.float64) for a in (q, k, v, W)))
        tag = "vnorm" if v_norm else "plain"
        t[f"inbatch.{tag}.out"] = np.asarray(c, dtype=np.float32)
        for nm, g in zip(("dq", "dk", "dv", "dw"), grads):
            t[f"inbatch.{tag}.{nm}"] = np.asarray(g, dtype=np.float32)

    # bf16 emulation of the reference numerics (method §4.2): S rounded to bf16,
    # S/tau computed in fp32 and rounded to bf16, softmax in fp32, W rounded to bf16.
    Bw, D, tau = 6, 16, 1e-2
    qe = rng.normal(size=(Bw, D)); qe /= np.linalg.norm(qe, axis=1, keepdims=True)
    pe = qe + 0.3 * rng.normal(size=(Bw, D)); pe /= np.linalg.norm(pe, axis=1, keepdims=True)
    qe, pe = qe.astype(np.float32), pe.astype(np.float32)
    S = (qe.astype(np.float64) @ pe.astype(np.float64).T).astype(np.float32)
    Sb = bf16_round(S)
    Z = bf16_round(Sb / np.float32(tau))
    Z[np.eye(Bw, dtype=bool)] = -np.inf
    Zm = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Zm, dtype=np.float32)
    Wb = bf16_round(E / E.sum(axis=1, keepdims=True, dtype=np.float32))
    t.update({"weights_bf16.q": qe, "weights_bf16.p": pe, "weights_bf16.s": Sb, "weights_bf16.w": Wb,
              "weights_bf16.tau": np.array([tau], dtype=np.float64)})
    path = os.path.join(outdir, "ops.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, path,
              metadata={"producer": "scripts/revela_reference.py", "vnorm_eps": repr(VNORM_EPS)})
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "train")
    os.makedirs(outdir, exist_ok=True)
    for name, cfg in CONFIGS.items():
        step_fixture(name, cfg, outdir)
    ops_fixture(outdir)


if __name__ == "__main__":
    main()
