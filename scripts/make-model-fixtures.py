#!/usr/bin/env python3
"""make-model-fixtures.py — golden fixtures for the model runtime (issue 6),
from independent references: Hugging Face transformers + PEFT for tiny
random-weight LLaMA / Qwen2 models, gguf-py's NumPy dequantiser for the ggml
block formats. Writes tests/fixtures/model/.

Reference stack (pinned; fixtures only, never needed at run time). The
fixtures in the repository were made with:
    python3 -m venv /tmp/rvref
    /tmp/rvref/bin/pip install torch==2.15.0 transformers==4.45.2 peft==0.13.2 \
        safetensors==0.8.0 gguf==0.19.0 numpy==1.24.2
(PyPI's torch is the CUDA build, ~3 GB with its nvidia-* wheels; it runs on
the CPU here. transformers 4.45.2 and peft 0.13.2 are Revela's own pins.)
Usage: /tmp/rvref/bin/python scripts/make-model-fixtures.py [OUTDIR]
       python3 scripts/make-model-fixtures.py --smollm2 GGUF [OUT.safetensors]
       python3 scripts/make-model-fixtures.py --gguf-to-hf GGUF OUTDIR
The second form is the reference for the real SmolLM2-135M GGUF
(scripts/get-model.sh): a NumPy forward written from the equations over
weights dequantised by gguf-py (never by our C code), with a `tokenizers`
BPE built from the GGUF metadata. It needs only numpy, gguf and tokenizers.
It writes next-token logits (top 32 per position) for a few sentences and
EOS-pooled, L2-normalised embeddings of Cranfield documents and queries
formatted as mteb's RepLLaMA wrapper does (tests/fixtures/model/
smollm2_{docs,queries}.jsonl); default OUT tests/fixtures/model/smollm2_ref.safetensors.

Fixtures:
  llama_tied/      llama, llama3 rope scaling, tied embeddings, GQA 4:2,
                   weights stored BF16 (single model.safetensors)
  llama_untied/    llama, attention_bias (q/k/v/o bias), untied lm_head,
                   F32 weights in two shards + model.safetensors.index.json
  qwen2/           qwen2 (q/k/v bias, o without), GQA 4:1, F16 weights saved
                   from the bare Qwen2Model (keys without "model.")
  llama_tied.gguf  the same weights as llama.cpp's converter lays them out
                   (blk.N names, Q/K rows permuted, rope_freqs.weight for the
                   llama3 scaling, F32 + BF16 tensors): checked against
                   llama_tied/golden.safetensors
  unknown_arch.gguf   general.architecture "falcon" (must be refused)
  */golden.safetensors   ids (I32, sequences packed), offsets (I64),
                   hidden (F32, last_hidden_state = final RMSNorm output),
                   logits (F32), computed per sequence in float32
  adapter_retriever/  PEFT LoRA (r=4, alpha=8, all 7 projections,
                   FEATURE_EXTRACTION) on llama_tied loaded with AutoModel:
                   keys base_model.model.layers.N...; golden_merged.safetensors
                   = hidden states of merge_and_unload()
  adapter_lm/      PEFT LoRA (r=8, alpha=16, rslora, q/v/down only,
                   CAUSAL_LM) on llama_untied loaded with AutoModelForCausalLM:
                   keys base_model.model.model.layers.N...; golden logits
  llama_tied/tokenizer.json  byte-level tokenizer, one id per byte (no merges)
  tiny_texts.jsonl, tiny_encode_ref.jsonl  BEIR-style inputs and the
                   embeddings rv-encode must give for them (see
                   make_tiny_tokenizer_and_encode_golden)
  dequant.safetensors    for each ggml type: TYPE.raw (U8 blocks) and
                   TYPE.expected (F32) from gguf.quants.dequantize
"""
import copy
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import save_file

try:
    import torch
except ImportError:          # the --smollm2 reference needs only numpy + gguf + tokenizers
    torch = None

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "model")
os.makedirs(OUT, exist_ok=True)
if torch is not None:
    torch.manual_seed(1234)
rng = np.random.default_rng(1234)

# three sequences of different lengths (ids < 256); the forward must handle
# them packed without padding
SEQS = [
    [1] + list(rng.integers(3, 256, 6)),
    [1] + list(rng.integers(3, 256, 18)),
    list(rng.integers(3, 256, 33)),
]
SEQS = [[int(t) for t in s] for s in SEQS]


def randomize(model, scale=0.15):
    """Replace the default 0.02-std init with larger weights, so that
    activations and logits are far from zero and errors are visible."""
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))


def round_to(model, dtype):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


def golden(causal_lm, body, seqs):
    """Per-sequence float32 forward (no padding): final-norm hidden states
    and logits, packed."""
    hidden, logits = [], []
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s])
            hidden.append(body(input_ids=ids).last_hidden_state[0].numpy())
            if causal_lm is not None:
                logits.append(causal_lm(input_ids=ids).logits[0].float().numpy())
    ids = np.array([t for s in seqs for t in s], dtype=np.int32)
    off = np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64)
    out = {"ids": ids, "offsets": off, "hidden": np.concatenate(hidden).astype(np.float32)}
    if logits:
        out["logits"] = np.concatenate(logits).astype(np.float32)
    return out


def make_models():
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
                  torch_dtype="float32")
    # llama, llama3 rope scaling, tied, bf16 storage
    cfg = LlamaConfig(**common, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=500000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
                      tie_word_embeddings=True)
    m = LlamaForCausalLM(cfg).eval()
    randomize(m)
    round_to(m, torch.bfloat16)
    d = os.path.join(OUT, "llama_tied")
    # save a converted copy: .to() would also round the RoPE inv_freq buffer
    copy.deepcopy(m).to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
    save_file(golden(m, m.model, SEQS), os.path.join(d, "golden.safetensors"))

    # llama, attention bias, untied, f32, sharded
    cfg = LlamaConfig(**common, num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=10000.0,
                      attention_bias=True, tie_word_embeddings=False)
    m = LlamaForCausalLM(cfg).eval()
    randomize(m)
    d = os.path.join(OUT, "llama_untied")
    m.save_pretrained(d, safe_serialization=True, max_shard_size="150KB")
    assert os.path.exists(os.path.join(d, "model.safetensors.index.json")), "expected a sharded checkpoint"
    save_file(golden(m, m.model, SEQS), os.path.join(d, "golden.safetensors"))

    # qwen2 with bias, GQA 4:1, f16 storage, saved from the bare Qwen2Model
    cfg = Qwen2Config(**common, num_key_value_heads=1, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      tie_word_embeddings=True, use_sliding_window=False)
    m = Qwen2ForCausalLM(cfg).eval()
    randomize(m)
    round_to(m, torch.float16)
    d = os.path.join(OUT, "qwen2")
    copy.deepcopy(m.model).to(torch.float16).save_pretrained(d, safe_serialization=True)
    save_file(golden(m, m.model, SEQS), os.path.join(d, "golden.safetensors"))


def hf_to_gguf_permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: llama.cpp's RoPE pairs
    adjacent rows, so Q/K rows are interleaved per head on conversion."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def make_gguf():
    """llama_tied as a GGUF file the way llama.cpp's converter writes it:
    blk.N.* names, Q/K permuted, llama3 scaling as rope_freqs.weight, tied
    output (no output.weight); Q/K/embeddings F32, other matrices BF16 (the
    bf16 values of the checkpoint, so the HF golden applies unchanged)."""
    import gguf
    d = os.path.join(OUT, "llama_tied")
    cfg = json.load(open(os.path.join(d, "config.json")))
    import torch as _t
    from safetensors.torch import load_file as load_t
    wt = load_t(os.path.join(d, "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg["hidden_size"] // n_head
    path = os.path.join(OUT, "llama_tied.gguf")
    g = gguf.GGUFWriter(path, "llama")
    g.add_block_count(cfg["num_hidden_layers"])
    g.add_context_length(cfg["max_position_embeddings"])
    g.add_embedding_length(cfg["hidden_size"])
    g.add_feed_forward_length(cfg["intermediate_size"])
    g.add_head_count(n_head)
    g.add_head_count_kv(n_kv)
    g.add_rope_freq_base(cfg["rope_theta"])
    g.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    g.add_rope_dimension_count(hd)
    g.add_vocab_size(cfg["vocab_size"])
    g.add_bos_token_id(1)
    g.add_eos_token_id(2)
    rs = cfg["rope_scaling"]
    base, dim = cfg["rope_theta"], hd
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_wl = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    high_wl = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    factors = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < high_wl:
            factors.append(1.0)
        elif wl > low_wl:
            factors.append(rs["factor"])
        else:
            sm = (rs["original_max_position_embeddings"] / wl - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
            factors.append(1.0 / ((1 - sm) / rs["factor"] + sm))
    g.add_tensor("rope_freqs.weight", np.array(factors, dtype=np.float32))

    def f32(name):
        return wt[name].to(_t.float32).numpy()

    def bf16(name):
        return wt[name].view(_t.int16).numpy().view(np.uint16)

    g.add_tensor("token_embd.weight", f32("model.embed_tokens.weight"))
    g.add_tensor("output_norm.weight", f32("model.norm.weight"))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        g.add_tensor(f"blk.{l}.attn_norm.weight", f32(p + "input_layernorm.weight"))
        g.add_tensor(f"blk.{l}.ffn_norm.weight", f32(p + "post_attention_layernorm.weight"))
        g.add_tensor(f"blk.{l}.attn_q.weight", hf_to_gguf_permute(f32(p + "self_attn.q_proj.weight"), n_head))
        g.add_tensor(f"blk.{l}.attn_k.weight", hf_to_gguf_permute(f32(p + "self_attn.k_proj.weight"), n_kv))
        for src, dst in (("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                         ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")):
            b = bf16(p + src + ".weight")
            g.add_tensor(f"blk.{l}.{dst}.weight", b, raw_shape=b.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()

    # an architecture the runtime does not know
    g = gguf.GGUFWriter(os.path.join(OUT, "unknown_arch.gguf"), "falcon")
    g.add_block_count(1)
    g.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


TINY_TEXTS = [
    {"_id": "d1", "title": "Wing flutter", "text": "  experimental study of a wing in a propeller slipstream .  "},
    {"_id": "d2", "text": "short"},
    {"_id": "d3", "title": "", "text": "a much longer text that the max-len of twenty-four tokens will truncate well before its end"},
    {"_id": "d4", "title": "Only a title", "text": ""},
    {"_id": "d5", "text": "caf\u00e9 na\u00efve \u2014 non-ASCII bytes"},
]


def make_tiny_tokenizer_and_encode_golden():
    """A byte-level tokenizer for the tiny llama (one token per byte, ids
    0..255, no merges) and the embeddings rv-encode must produce for
    TINY_TEXTS with --prefix "passage:  " --max-len 24 --adapter
    adapter_retriever, computed with tokenizers + transformers + PEFT the way
    mteb's RepLLaMAWrapper does (corpus_to_texts, prefix, strip, truncation
    to max_len - 1, EOS appended, EOS pooling, F.normalize)."""
    from peft import PeftModel
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoModel

    bl = pre_tokenizers.ByteLevel.alphabet()
    # the GPT-2 byte-to-unicode table, so that id == byte value
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_char = {b: chr(c) for b, c in zip(bs, cs)}
    assert set(byte_char.values()) == set(bl)
    vocab = {byte_char[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab, [], ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    d = os.path.join(OUT, "llama_tied")
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(OUT, "tiny_texts.jsonl"), "w") as f:
        for t in TINY_TEXTS:
            f.write(json.dumps(t) + "\n")
    base = AutoModel.from_pretrained(d, torch_dtype=torch.float32).eval()
    merged = PeftModel.from_pretrained(base, os.path.join(OUT, "adapter_retriever")).merge_and_unload().eval()
    texts = mteb_texts(TINY_TEXTS, [])
    eos, max_len = 2, 24
    with open(os.path.join(OUT, "tiny_encode_ref.jsonl"), "w") as f, torch.no_grad():
        for doc, text in zip(TINY_TEXTS, texts):
            ids = tok.encode(text, add_special_tokens=False).ids[: max_len - 1] + [eos]
            h = merged(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
            h = torch.nn.functional.normalize(h, dim=-1)
            f.write(json.dumps({"id": doc["_id"], "vector": [float(x) for x in h]}) + "\n")


def make_adapters():
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModel, AutoModelForCausalLM

    def randomize_lora(pm, seed):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in pm.named_parameters():
                if "lora_" in name:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))

    # retriever form: AutoModel (bare LlamaModel) + LoRA on all projections
    base = AutoModel.from_pretrained(os.path.join(OUT, "llama_tied"), torch_dtype=torch.float32).eval()
    pm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="FEATURE_EXTRACTION",
                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"]))
    randomize_lora(pm, 7)
    d = os.path.join(OUT, "adapter_retriever")
    pm.peft_config["default"].base_model_name_or_path = "tests/fixtures/model/llama_tied"
    pm.save_pretrained(d)
    # reload through the public path mteb uses, then merge
    base = AutoModel.from_pretrained(os.path.join(OUT, "llama_tied"), torch_dtype=torch.float32).eval()
    merged = PeftModel.from_pretrained(base, d).merge_and_unload().eval()
    g = golden(None, merged, SEQS)
    save_file(g, os.path.join(d, "golden_merged.safetensors"))
    # LM form: AutoModelForCausalLM + rsLoRA on a subset
    base = AutoModelForCausalLM.from_pretrained(os.path.join(OUT, "llama_untied"), torch_dtype=torch.float32).eval()
    pm = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                         use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"]))
    randomize_lora(pm, 8)
    d = os.path.join(OUT, "adapter_lm")
    pm.peft_config["default"].base_model_name_or_path = "tests/fixtures/model/llama_untied"
    pm.save_pretrained(d)
    base = AutoModelForCausalLM.from_pretrained(os.path.join(OUT, "llama_untied"), torch_dtype=torch.float32).eval()
    merged = PeftModel.from_pretrained(base, d).merge_and_unload().eval()
    save_file(golden(merged, merged.model, SEQS), os.path.join(d, "golden_merged.safetensors"))


def make_dequant():
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize

    out = {}
    types = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"]
    for name in types:
        qt = Q[name]
        block, nbytes = gguf.GGML_QUANT_SIZES[qt]
        n_blocks = 6
        raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
        # keep the f16 scales finite and of ordinary size: write them explicitly
        def put_half(b, off, lo=0.001, hi=0.05, signed=False):
            v = rng.uniform(lo, hi) * (rng.choice([-1, 1]) if signed else 1)
            raw[b, off:off + 2] = np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)
        for b in range(n_blocks):
            if name in ("Q4_0", "Q5_0", "Q8_0"):
                put_half(b, 0, signed=True)
            elif name in ("Q4_1", "Q5_1"):
                put_half(b, 0); put_half(b, 2, signed=True)
            elif name == "Q2_K":
                put_half(b, 80); put_half(b, 82)
            elif name == "Q3_K":
                put_half(b, 108, signed=True)
            elif name in ("Q4_K", "Q5_K"):
                put_half(b, 0); put_half(b, 2)
            elif name == "Q6_K":
                put_half(b, 208, signed=True)
        if name == "F16":
            vals = rng.standard_normal(n_blocks * 16).astype(np.float16)
            raw = np.frombuffer(vals.tobytes(), dtype=np.uint8).reshape(n_blocks, 32)
            exp = vals.astype(np.float32)
        elif name == "BF16":
            f = rng.standard_normal(n_blocks * 16).astype(np.float32)
            bits = (f.view(np.uint32) >> 16).astype(np.uint16)
            raw = np.frombuffer(bits.tobytes(), dtype=np.uint8).reshape(n_blocks, 32)
            exp = (bits.astype(np.uint32) << 16).view(np.float32)
        else:
            exp = dequantize(raw, qt).astype(np.float32).reshape(-1)
        assert exp.size == (n_blocks * block if name not in ("F16", "BF16") else n_blocks * 16)
        out[name + ".raw"] = np.ascontiguousarray(raw.reshape(-1))
        out[name + ".expected"] = np.ascontiguousarray(exp.reshape(-1))
        out[name + ".type"] = np.array([int(qt)], dtype=np.int32)
    save_file(out, os.path.join(OUT, "dequant.safetensors"))


SENTENCES = [
    "The capital of France is",
    "Water boils at a temperature of one hundred degrees",
    "def fibonacci(n):\n    if n <",
    "In 1969, Neil Armstrong became the first person to walk on the",
]


def gguf_tokenizer(r):
    """A `tokenizers` byte-level BPE from tokenizer.ggml.* (model gpt2,
    pre-tokenizer "smollm": single digits, then the GPT-2 byte-level split)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    f = r.fields
    assert f["tokenizer.ggml.model"].contents() == "gpt2"
    assert f["tokenizer.ggml.pre"].contents() == "smollm"
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"].contents()]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])   # CONTROL
    return tok


class NumpyLlama:
    """The LLaMA forward from the equations, float64, one sequence at a time."""

    def __init__(self, r):
        from gguf.quants import dequantize
        f = r.fields
        assert f["general.architecture"].contents() == "llama"
        self.D = f["llama.embedding_length"].contents()
        self.L = f["llama.block_count"].contents()
        self.H = f["llama.attention.head_count"].contents()
        self.KV = f["llama.attention.head_count_kv"].contents()
        self.eps = f["llama.attention.layer_norm_rms_epsilon"].contents()
        self.theta = f["llama.rope.freq_base"].contents()
        self.hd = self.D // self.H
        self.eos = f["tokenizer.ggml.eos_token_id"].contents()
        self.W = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float64)
            self.W[t.name] = a.reshape(tuple(int(x) for x in reversed(t.shape)))
        for l in range(self.L):   # undo convert_hf_to_gguf's Q/K row permutation
            for name, nh in ((f"blk.{l}.attn_q.weight", self.H), (f"blk.{l}.attn_k.weight", self.KV)):
                w = self.W[name]
                self.W[name] = w.reshape(nh, self.hd // 2, 2, w.shape[1]).swapaxes(1, 2).reshape(w.shape)
        self.out = self.W.get("output.weight", self.W["token_embd.weight"])

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def hidden(self, ids):
        W, hd, T = self.W, self.hd, len(ids)
        x = W["token_embd.weight"][ids]
        inv = 1.0 / (self.theta ** (np.arange(0, hd, 2) / hd))
        ang = np.arange(T)[:, None] * inv[None, :]
        cos, sin = np.cos(ang), np.sin(ang)

        def rope(v):   # v: [T, heads, hd], rotate_half convention
            a, b = v[..., : hd // 2], v[..., hd // 2:]
            c, s = cos[:, None, :], sin[:, None, :]
            return np.concatenate([a * c - b * s, b * c + a * s], -1)

        mask = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(self.L):
            p = f"blk.{l}."
            h = self.rms(x, W[p + "attn_norm.weight"])
            q = rope((h @ W[p + "attn_q.weight"].T).reshape(T, self.H, hd))
            k = rope((h @ W[p + "attn_k.weight"].T).reshape(T, self.KV, hd))
            v = (h @ W[p + "attn_v.weight"].T).reshape(T, self.KV, hd)
            rep = self.H // self.KV
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hts,shd->thd", s, v).reshape(T, self.H * hd)
            x = x + o @ W[p + "attn_output.weight"].T
            h = self.rms(x, W[p + "ffn_norm.weight"])
            g = h @ W[p + "ffn_gate.weight"].T
            x = x + ((g / (1 + np.exp(-g))) * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T
        return self.rms(x, W["output_norm.weight"])


def mteb_texts(docs, queries):
    """RepLLaMAWrapper formatting: corpus_to_texts(sep=" "), then the
    two-space prefixes and strip()."""
    out = []
    for d in docs:
        body = (d["title"] + " " + d["text"]).strip() if "title" in d else d["text"].strip()
        out.append(f"passage:  {body}".strip())
    for q in queries:
        out.append(f"query:  {q['text'].strip()}".strip())
    return out


def make_smollm2(gguf_path, out_path):
    import gguf

    fx = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "model")
    docs_path, queries_path = os.path.join(fx, "smollm2_docs.jsonl"), os.path.join(fx, "smollm2_queries.jsonl")
    if not os.path.exists(docs_path):   # a few real Cranfield documents and queries
        coll = os.environ.get("RV_COLLECTIONS", "/work/shared/collections") + "/cranfield"
        with open(coll + "/corpus.jsonl") as f, open(docs_path, "w") as o:
            for line in f.readlines()[:6]:
                o.write(line)
        with open(coll + "/queries.jsonl") as f, open(queries_path, "w") as o:
            for line in f.readlines()[:3]:
                o.write(line)
    docs = [json.loads(l) for l in open(docs_path)]
    queries = [json.loads(l) for l in open(queries_path)]
    r = gguf.GGUFReader(gguf_path)
    tok = gguf_tokenizer(r)
    model = NumpyLlama(r)
    out = {}
    ids, off, top_ids, top_vals = [], [0], [], []
    for sent in SENTENCES:
        s_ids = tok.encode(sent, add_special_tokens=False).ids
        logits = model.hidden(np.array(s_ids)) @ model.out.T
        order = np.argsort(-logits, axis=1)[:, :32]
        top_ids.append(order.astype(np.int32))
        top_vals.append(np.take_along_axis(logits, order, 1).astype(np.float32))
        ids += s_ids
        off.append(len(ids))
        print(f"  {sent!r} -> {tok.decode([int(order[-1, 0])])!r}", file=sys.stderr)
    out.update(ids=np.array(ids, dtype=np.int32), offsets=np.array(off, dtype=np.int64),
               top_ids=np.concatenate(top_ids), top_logits=np.concatenate(top_vals))
    max_len = 512
    e_ids, e_off, embs = [], [0], []
    for text in mteb_texts(docs, queries):
        t = tok.encode(text, add_special_tokens=False).ids[: max_len - 1] + [model.eos]
        h = model.hidden(np.array(t))[-1]
        embs.append(h / np.linalg.norm(h))
        e_ids += t
        e_off.append(len(e_ids))
    out.update(emb_ids=np.array(e_ids, dtype=np.int32), emb_offsets=np.array(e_off, dtype=np.int64),
               embeddings=np.array(embs, dtype=np.float32))
    save_file(out, out_path)
    with open(os.path.join(os.path.dirname(out_path), "smollm2_ref_emb.jsonl"), "w") as f:
        for doc, e in zip(docs + queries, embs):
            f.write(json.dumps({"id": doc["_id"], "vector": [float(x) for x in e]}) + "\n")
    print("wrote", out_path, file=sys.stderr)


def gguf_to_hf(gguf_path, out_dir):
    """The GGUF's weights (dequantised by gguf-py, Q/K unpermuted) as a
    float32 Hugging Face llama directory with a tokenizer.json, so that
    transformers can run the very same model (bench/encode.sh)."""
    import gguf
    from safetensors.numpy import save_file as save

    r = gguf.GGUFReader(gguf_path)
    m = NumpyLlama(r)
    f = r.fields
    os.makedirs(out_dir, exist_ok=True)
    w = {"model.embed_tokens.weight": m.W["token_embd.weight"], "model.norm.weight": m.W["output_norm.weight"]}
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
             "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for l in range(m.L):
        for g, h in names.items():
            w[f"model.layers.{l}.{h}.weight"] = m.W[f"blk.{l}.{g}.weight"]
    save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}, os.path.join(out_dir, "model.safetensors"),
         metadata={"format": "pt"})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": m.D,
           "intermediate_size": int(f["llama.feed_forward_length"].contents()), "num_hidden_layers": m.L,
           "num_attention_heads": m.H, "num_key_value_heads": m.KV, "rms_norm_eps": float(m.eps),
           "rope_theta": float(m.theta), "max_position_embeddings": int(f["llama.context_length"].contents()),
           "vocab_size": int(m.W["token_embd.weight"].shape[0]), "tie_word_embeddings": "output.weight" not in m.W,
           "bos_token_id": int(f["tokenizer.ggml.bos_token_id"].contents()), "eos_token_id": int(m.eos),
           "hidden_act": "silu", "torch_dtype": "float32"}
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=1)
    gguf_tokenizer(r).save(os.path.join(out_dir, "tokenizer.json"))
    print(out_dir)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--gguf-to-hf":
    gguf_to_hf(sys.argv[2], sys.argv[3])
    sys.exit(0)

if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--smollm2":
    here = os.path.dirname(os.path.abspath(__file__))
    make_smollm2(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else
                 os.path.join(here, "..", "tests", "fixtures", "model", "smollm2_ref.safetensors"))
    sys.exit(0)

if __name__ == "__main__":
    make_models()
    make_gguf()
    make_adapters()
    make_tiny_tokenizer_and_encode_golden()
    make_dequant()
    for a in ("adapter_retriever", "adapter_lm"):   # PEFT's model-card stub: not a fixture
        readme = os.path.join(OUT, a, "README.md")
        if os.path.exists(readme):
            os.remove(readme)
    print("wrote", os.path.abspath(OUT))
