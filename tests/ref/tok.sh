#!/bin/bash
# tok.sh — live parity of rv-tokenize with Hugging Face `tokenizers` (in the
# reference venv) on freshly generated random Unicode strings: ids without
# and with special tokens, and decode of random id lists. The seed is
# $RV_SEED, else the current time (printed, so a failure can be replayed).
# Tokenizers: llama3, qwen2.5, gpt2 from ../shared/tokenizers; SmolLM2 when
# the `gguf` package and the GGUF file ($RV_SMOLLM2_GGUF or
# scripts/get-model.sh) are available.
set -u
ROOT=${RV_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tests/ref/venv.sh"
if [ "$RV_VENV_OK" != 1 ]; then echo "SKIP tok_ref: no reference venv"; exit 0; fi
TOKS=${RV_TOKENIZERS:-$ROOT/../shared/tokenizers}
if [ ! -d "$TOKS/llama3" ]; then echo "SKIP tok_ref: $TOKS not found"; exit 0; fi
SEED=${RV_SEED:-$(date +%s)}
N=${RV_TOK_REF_N:-4000}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
echo "tok_ref: seed $SEED, $N strings"
GGUF=${RV_SMOLLM2_GGUF:-}
if [ -z "$GGUF" ] && [ -f "$ROOT/scripts/get-model.sh" ]; then GGUF=$(sh "$ROOT/scripts/get-model.sh" 2>/dev/null | tail -1); fi

python3 - "$SEED" "$N" "$TOKS" "$D" "$GGUF" <<'EOF'
import json, os, random, sys
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE
seed, n, toks, out, gguf_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rng = random.Random(seed)
pools = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r\u00a0\u2028\u3000\u0085\u000b",
         "'\"!?.,;:-_()[]{}<>|/\\@#$%^&*+=~`", "sStTmMdDlLrReEvV\u017f", "\u0301\u0300\u0308\u0323\u093c\u094d\u200d\ufe0f",
         "éüñçøßΩσЖя中文日本語한국어\u1100\u1161\u11a8", "مرحباשלוםनमस्ते", "٠١٢٣४५①½", "😀👨👩👧🏽🇫🇷❤🔥"]
specials = ["<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|fim_prefix|>", "<|", "|>", "<repo_name>"]
texts = []
for _ in range(n):
    parts = []
    for _ in range(rng.choice([1, 2, 4, 9, 20, 60])):
        r = rng.random()
        if r < 0.05:
            parts.append(rng.choice(specials))
        elif r < 0.25:
            cp = rng.randrange(0x20, 0x110000) if rng.random() < 0.5 else rng.randrange(0x20, 0x3000)
            parts.append(chr(cp) if not 0xD800 <= cp <= 0xDFFF else "x")
        else:
            parts.append(rng.choice(rng.choice(pools)))
    texts.append("".join(parts))
with open(os.path.join(out, "in.jsonl"), "w") as f:
    for t in texts:
        f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
tk = {"llama3": Tokenizer.from_file(os.path.join(toks, "llama3", "tokenizer.json")),
      "qwen2.5": Tokenizer.from_file(os.path.join(toks, "qwen2.5", "tokenizer.json"))}
g = Tokenizer(BPE.from_file(os.path.join(toks, "gpt2", "encoder.json"), os.path.join(toks, "gpt2", "vocab.bpe")))
g.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
g.decoder = decoders.ByteLevel()
g.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
tk["gpt2"] = g
try:
    if gguf_path and os.path.exists(gguf_path):
        import gguf
        r = gguf.GGUFReader(gguf_path)
        strs = lambda k: [bytes(r.fields[k].parts[i]).decode() for i in r.fields[k].data]
        tokens, merges = strs("tokenizer.ggml.tokens"), strs("tokenizer.ggml.merges")
        tt = r.fields["tokenizer.ggml.token_type"]
        types = [int(tt.parts[i][0]) for i in tt.data]
        s = Tokenizer(BPE({t: i for i, t in enumerate(tokens)}, [tuple(m.split(" ")) for m in merges]))
        s.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        s.decoder = decoders.ByteLevel()
        s.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == 3])
        tk["smollm2"] = s
except ImportError:
    print("SKIP tok_ref/smollm2: the gguf package is not in the venv")
for name, t in tk.items():
    with open(os.path.join(out, name + ".ids"), "w") as f:
        for e in t.encode_batch(texts, add_special_tokens=False):
            f.write(json.dumps(e.ids, separators=(",", ":")) + "\n")
    with open(os.path.join(out, name + ".ids-special"), "w") as f:
        for e in t.encode_batch(texts, add_special_tokens=True):
            f.write(json.dumps(e.ids, separators=(",", ":")) + "\n")
    nv = t.get_vocab_size(with_added_tokens=True)
    with open(os.path.join(out, name + ".rand-ids"), "w") as f, open(os.path.join(out, name + ".decoded"), "w") as h:
        for _ in range(500):
            ids = [rng.randrange(nv) for _ in range(rng.randrange(0, 10))]
            f.write(json.dumps(ids) + "\n")
            h.write(json.dumps({"text": t.decode(ids, skip_special_tokens=False)}, ensure_ascii=False,
                               separators=(",", ":")) + "\n")
    with open(os.path.join(out, name + ".path"), "w") as f:
        f.write({"llama3": os.path.join(toks, "llama3", "tokenizer.json"), "qwen2.5": os.path.join(toks, "qwen2.5"),
                 "gpt2": os.path.join(toks, "gpt2"), "smollm2": gguf_path}[name])
EOF
[ $? -eq 0 ] || { echo "FAIL tok_ref/generate"; exit 1; }

first_diff() {  # which line differs first
    cmp "$1" "$2" >/dev/null && return
    echo "  first differing line: $(diff <(cat "$1") <(cat "$2") | head -1)"
}
for p in "$D"/*.path; do
    name=$(basename "$p" .path)
    tp=$(cat "$p")
    rv-tokenize -q -t "$tp" --format ids "$D/in.jsonl" > "$D/$name.ours" 2> "$D/err"
    if cmp -s "$D/$name.ours" "$D/$name.ids"; then echo "PASS tok_ref/$name.ids ($N strings)"
    else echo "FAIL tok_ref/$name.ids (seed $SEED)"; first_diff "$D/$name.ids" "$D/$name.ours"; cat "$D/err"; fi
    rv-tokenize -q -t "$tp" --format ids --add-special "$D/in.jsonl" > "$D/$name.ours-special" 2> "$D/err"
    if cmp -s "$D/$name.ours-special" "$D/$name.ids-special"; then echo "PASS tok_ref/$name.ids_add_special"
    else echo "FAIL tok_ref/$name.ids_add_special (seed $SEED)"; first_diff "$D/$name.ids-special" "$D/$name.ours-special"; fi
    rv-tokenize -q -t "$tp" --decode "$D/$name.rand-ids" > "$D/$name.ours-decoded" 2> "$D/err"
    if python3 -c '
import json, sys
a = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
b = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
sys.exit(0 if a == b else 1)' "$D/$name.ours-decoded" "$D/$name.decoded"; then echo "PASS tok_ref/$name.decode"
    else echo "FAIL tok_ref/$name.decode (seed $SEED)"; first_diff "$D/$name.decoded" "$D/$name.ours-decoded"; cat "$D/err"; fi
done
