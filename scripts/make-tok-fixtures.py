#!/usr/bin/env python3
"""make-tok-fixtures.py — golden token ids from Hugging Face `tokenizers` for
the tokenizer parity tests (tests/unit/test_tok_parity.c).

Usage:
  scripts/make-tok-fixtures.py [--shared DIR] [--gguf SMOLLM2.gguf] [--out tests/fixtures/tok]
  scripts/make-tok-fixtures.py --unicode [--header lib/unicode_hf.h] [--out tests/fixtures/tok]

Needs: tokenizers (the reference), gguf (reads the SmolLM2 vocabulary),
zstandard (writes the fixtures). Run it in a venv that has them.

What it writes (all zstd-compressed):
  corpus.jsonl.zst      one {"text": …} per line: ≥ 1 MB of real, diverse text
                        (sources below) followed by hand-written edge cases
  random.jsonl.zst      random Unicode strings (seed 20240611, see random_strings)
  NAME.ids.zst          per tokenizer: ids of every corpus document, then of every
                        random string (add_special_tokens=False), then for each
                        hand-written sample the ids with add_special_tokens=True and
                        with encode_special_tokens=True (specials kept as text)
  NAME.decode.jsonl.zst per tokenizer: random id lists with HF decode() output,
                        with and without skip_special_tokens (lossy U+FFFD included)
The .ids format: "RVTOKFX1", u32 count, then per entry u32 n + n u32 ids
(little-endian).

With --unicode it instead measures, on every code point, where HF disagrees
with utf8proc and writes lib/unicode_hf.h plus the fixtures uclass.bin.zst and
nfc.jsonl.zst (tests/unit/test_tok_unicode.c). Why: the pre-tokenizer regexes
run in Oniguruma, whose Unicode data in tokenizers 0.23 is newer (16.0) than
utf8proc 2.8 (15.0), and HF's NFC (Rust unicode-normalization) gives combining
class 0 to some marks that utf8proc gives a non-zero class. Measured as:
  - classes: for \\p{L}, \\p{N} and \\s, a Split(pattern, "removed") over strings
    of all code points shows which ones the pattern matches;
  - NFC: each code point in 9 contexts (alone, after 'a', before U+0301,
    after "\\r\\u0300", before U+0316, ...) normalised by HF and by utf8proc
    (the system's libutf8proc.so.2 through ctypes);
  uclass.bin.zst: HF's class (0 other, 1 letter, 2 number, 3 space) of every
    code point 0..0x10FFFF (surrogates 0); nfc.jsonl.zst: {"in","out"} HF NFC of
    the probe strings where either side composes, decomposes or reorders.

Text sources (all read from this machine; the list is the fixture's provenance):
  - man pages: the first 45 files of /usr/share/man/man1 (sorted), roff source
  - Python sources: 16 modules of /usr/lib/python3.11 (sorted, first 12 KB each)
  - licence texts: /usr/share/common-licenses/{Apache-2.0,GPL-3}
  - translations (the first 12 gettext catalogs per language in /usr/share/locale,
    16,000 characters per language): Russian, Ukrainian,
    Chinese (simplified, traditional), Japanese, Korean, Arabic, Persian, Hindi,
    Marathi, Nepali, Greek, Hebrew, Thai, Georgian, Amharic, Bengali, Tamil
  - the first 10 of those documents again with \r\n line ends and with NBSP
    instead of their first 40 spaces
  - HAND_WRITTEN below: emoji with ZWJ sequences, combining marks, odd
    whitespace, long digit runs, upper-case contractions, special-token
    look-alikes, NFD text.

Reference tokenizers:
  llama3, qwen2.5: Tokenizer.from_file(DIR/tokenizer.json)
  gpt2: BPE.from_file(encoder.json, vocab.bpe) with ByteLevel(add_prefix_space=False)
        pre-tokenizer and ByteLevel decoder, "<|endoftext|>" added as a special token
        (what transformers' GPT2 conversion builds)
  smollm2: from the GGUF's tokenizer.ggml.tokens / merges (read with the `gguf`
        package): BPE(vocab, merges), pre-tokenizer Sequence[Digits(individual_digits=True),
        ByteLevel(add_prefix_space=False, use_regex=True)] (the Hub tokenizer.json of
        SmolLM2; llama.cpp's "smollm" pre-type is the same split: \\p{N} isolated, then the
        GPT-2 pattern), ByteLevel decoder, the 17 CONTROL tokens (token_type 3) added as
        special tokens, no post-processor template (tokenizer.ggml.add_bos_token = false).
"""
import argparse
import ctypes
import glob
import gettext
import gzip
import json
import os
import random
import struct
import sys

import zstandard
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

SEED = 20240611
DOC_LIMIT = 8192

HAND_WRITTEN = [
    "Hello world! Revela trains dense retrievers via language modeling, 12345 times.",
    "Family: 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, skin tones 👋🏽👍🏿, keycap 1️⃣ #️⃣, rainbow 🏳️‍🌈, 🧑‍💻 codes; ❤️‍🔥.",
    "Combining: e\u0301 a\u0300 o\u0308\u0304 n\u0303 Å A\u030a \u1e9b\u0323 q\u0307\u0323 Z\u0335\u0336 ḱ̷̢",
    "NFD Café vs NFC Café; Ω vs Ω; ﬁ ligature; Ａ fullwidth; ½ ² ⑦ Ⅻ",
    "Hangul: 한국어 \u1112\u1161\u11ab\u1100\u1173\u11af; jamo \u1100\u1161 \u1100\u1161\u11a8",
    "Windows line\r\nends\r\n\r\nhere\r\n  and\ttabs\t\there\u00a0nbsp\u00a0\u00a0x\u2028line sep\u2029para sep\u3000ideo\u2009thin\u200bzwsp\ufeffbom",
    "   leading spaces, trailing spaces   ",
    "\n\n\nnewlines\n\n \n \t\n",
    "Digits 1234567890123456789 3.14159265358979 1,000,000 ١٢٣٤٥ ०१२३४५६७८९ 一二三 ⅠⅡⅢ ૧૨૩ 12ab34",
    "I'M SURE IT'S FINE, WE'LL SEE; YOU'RE, THEY'VE, HE'D, DON'T. it's i'm we'll you're they've he'd don't 'tis",
    "Mixed case: It'S It'Ll It'Re It'Ve It'D It'M x'ſ x'ſa O'Neil rock'n'roll '' 's 'S",
    "Specials: <|endoftext|> <|begin_of_text|> <|end_of_text|> <|im_start|>user\nhi<|im_end|> <|fim_prefix|> <|eot_id|>",
    "Look-alikes: <|endoftext| <|endoftext|>> <<|endoftext|> <|endofText|> < |endoftext|> <|reserved_special_token_0|> <repo_name> <filename>x<file_sep>",
    "Adjacent<|endoftext|><|endoftext|>specials<|im_start|><|im_end|>end",
    "Code: def f(x):\n    return x**2  # square\n\nint main(void) { return 0; }\n\t$ ls -la | grep '^d' && echo \"ok\"\n",
    "URLs https://example.com/a_b-c?d=e&f=g#h and emails a.b@c.de, paths /usr/lib/x86_64-linux-gnu/libc.so.6",
    "Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "中文：我能吞下玻璃而不伤身体。日本語：私はガラスを食べられます。それは私を傷つけません。",
    "العربية: أنا قادر على أكل الزجاج و هذا لا يؤلمني. فارسی: من می توانم بدون احساس درد شیشه بخورم.",
    "हिन्दी: मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती. ক্ষ ত্র",
    "Ελληνικά: Μπορώ να φάω σπασμένα γυαλιά χωρίς να πάθω τίποτα. עברית: אני יכול לאכול זכוכית",
    "ไทย: ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ ქართული: მინას ვჭამ და არა მტკივა.",
    "Math: ∀x∈ℝ: x²≥0, ∑ᵢ aᵢ ≤ ∞, ∫₀¹ f(t) dt ≈ π/4 ± ε; 𝔸𝔹ℂ 𝒜 𝟘𝟙𝟚",
    "Odd: \x00\x01\x07\x1b[31mred\x1b[0m\x7f\u0085next\u00ad\u200d\u200c\u2060\ufffd\U0001f600\U0010fffd",
    "A" * 300 + " " + "ab" * 200 + " " + "😀" * 50,
    "",
    " ",
    "'",
    "x",
]


def read_text(path, limit=None):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8", errors="replace")
    return text[:limit] if limit else text


def split_docs(text, limit=DOC_LIMIT):
    """Cuts text into documents of at most `limit` characters at line ends."""
    docs, cur, size = [], [], 0
    for line in text.splitlines(keepends=True):
        if size + len(line) > limit and cur:
            docs.append("".join(cur))
            cur, size = [], 0
        cur.append(line)
        size += len(line)
    if cur:
        docs.append("".join(cur))
    return docs


def mo_strings(lang):
    out = []
    for mo in sorted(glob.glob(f"/usr/share/locale/{lang}/LC_MESSAGES/*.mo"))[:12]:
        try:
            with open(mo, "rb") as f:
                cat = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        for k in sorted(cat, key=lambda k: str(k)):
            v = cat[k]
            if isinstance(v, str) and v and not isinstance(k, tuple):
                out.append(v)
    return out


def real_corpus():
    docs = []
    for p in sorted(glob.glob("/usr/share/man/man1/*.1.gz"))[:45]:
        docs += split_docs(read_text(p))
    for p in sorted(glob.glob("/usr/lib/python3.11/*.py"))[:16]:
        docs += split_docs(read_text(p, 12000))
    for name in ["Apache-2.0", "GPL-3"]:
        p = "/usr/share/common-licenses/" + name
        if os.path.exists(p):
            docs += split_docs(read_text(p))
    langs = ["ru", "uk", "zh_CN", "zh_TW", "ja", "ko", "ar", "fa", "hi", "mr", "ne", "el", "he", "th", "ka", "am",
             "bn", "ta"]
    for lang in langs:
        strings = mo_strings(lang)
        text = "\n".join(strings)[:16000]
        docs += split_docs(text, 4000)
    # a few real documents with Windows line ends and NBSP-separated words
    extra = []
    for d in docs[:200:20]:
        extra.append(d.replace("\n", "\r\n"))
        extra.append(d.replace(" ", "\u00a0", 40))
    return docs + extra


def random_strings(n=3000):
    rng = random.Random(SEED)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " \t\n\r\u00a0\u2028\u2029\u3000\u2009\u0085\u000b\u000c\u001c\u180e\u200b\ufeff",
        "'\"!?.,;:-_()[]{}<>|/\\@#$%^&*+=~`",
        "sStTmMdDlLrReEvVſ",
        "\u0301\u0300\u0308\u0323\u0327\u093c\u094d\u0e31\u05b7\u064b\u302a\u20dd\ufe0f\u200d",
        "éüñçøåßÆŒĳǅǈΩΣσςЖжЯя",
        "你好世界中文字日本語かなカナ한국어\u1100\u1161\u11a8",
        "مرحباשלוםनमस्तेสวัสดีგამარჯობა",
        "٠١٢٣٤٥٦٧٨٩०१२३४५६७८९①②½²Ⅻ",
        "😀👨👩👧🏽🇫🇷❤🔥🧑💻",
    ]
    specials = ["<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|fim_prefix|>", "<|endoftext", "<|",
                "|>", "<repo_name>", "<file_sep>"]
    out = []
    for _ in range(n):
        length = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 80])
        parts = []
        for _ in range(length):
            r = rng.random()
            if r < 0.06:
                parts.append(rng.choice(specials))
            elif r < 0.22:
                # any scalar value, astral planes included
                while True:
                    cp = rng.randrange(0x20, 0x110000) if rng.random() < 0.5 else rng.randrange(0x20, 0x3000)
                    if not 0xD800 <= cp <= 0xDFFF:
                        break
                parts.append(chr(cp))
            else:
                parts.append(rng.choice(rng.choice(pools)))
        out.append("".join(parts))
    return out


def random_id_lists(tok, n_ids, rng, specials, n=300):
    lists = []
    for _ in range(n):
        k = rng.randrange(0, 12)
        ids = []
        for _ in range(k):
            if rng.random() < 0.1 and specials:
                ids.append(rng.choice(specials))
            else:
                ids.append(rng.randrange(0, n_ids))
        lists.append(ids)
    return lists


def gguf_tokenizer(path):
    import gguf
    r = gguf.GGUFReader(path)

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = strings("tokenizer.ggml.merges")
    tt = r.fields["tokenizer.ggml.token_type"]
    types = [int(tt.parts[i][0]) for i in tt.data]
    pre = bytes(r.fields["tokenizer.ggml.pre"].parts[-1]).decode()
    assert pre == "smollm", pre
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(BPE(vocab, [tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    return tok


def gpt2_tokenizer(d):
    tok = Tokenizer(BPE.from_file(os.path.join(d, "encoder.json"), os.path.join(d, "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return tok


def load_all(shared, gguf_path):
    toks = {
        "llama3": Tokenizer.from_file(os.path.join(shared, "llama3", "tokenizer.json")),
        "qwen2.5": Tokenizer.from_file(os.path.join(shared, "qwen2.5", "tokenizer.json")),
        "gpt2": gpt2_tokenizer(os.path.join(shared, "gpt2")),
    }
    if gguf_path:
        toks["smollm2"] = gguf_tokenizer(gguf_path)
    return toks


def encode_all(tok, texts, add_special=False, special_as_text=False):
    tok.encode_special_tokens = special_as_text
    try:
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=add_special)]
    finally:
        tok.encode_special_tokens = False


def write_ids(path, lists):
    out = bytearray(b"RVTOKFX1")
    out += struct.pack("<I", len(lists))
    for ids in lists:
        out += struct.pack("<I", len(ids))
        out += struct.pack(f"<{len(ids)}I", *ids)
    with open(path, "wb") as f:
        f.write(zstandard.ZstdCompressor(level=19).compress(bytes(out)))


def write_jsonl(path, rows):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    with open(path, "wb") as f:
        f.write(zstandard.ZstdCompressor(level=19).compress(data))


_UTF8PROC = None


def utf8proc():
    """The system's libutf8proc (what lib/unicode.c links) and libc, via ctypes."""
    global _UTF8PROC
    if _UTF8PROC is None:
        lib = ctypes.CDLL("libutf8proc.so.2")
        lib.utf8proc_category.restype = ctypes.c_int
        lib.utf8proc_NFC.restype = ctypes.c_void_p
        lib.utf8proc_NFC.argtypes = [ctypes.c_char_p]
        _UTF8PROC = (lib, ctypes.CDLL("libc.so.6"))
    return _UTF8PROC


CPS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def up_nfc(s):
    lib, libc = utf8proc()
    p = lib.utf8proc_NFC(s.encode())
    r = ctypes.string_at(p).decode()
    libc.free(ctypes.c_void_p(p))
    return r


def hf_matched(pattern):
    sp = pre_tokenizers.Split(Regex(pattern), behavior="removed")
    res = set()
    for i in range(0, len(CPS), 65536):
        block = CPS[i:i + 65536]
        covered = bytearray(len(block))
        for _, (a, b) in sp.pre_tokenize_str("".join(map(chr, block))):
            covered[a:b] = b"\x01" * (b - a)
        res.update(c for k, c in enumerate(block) if not covered[k])
    return res


def utf8proc_class(c):
    lib, _ = utf8proc()
    cat = lib.utf8proc_category(c)
    if c in (9, 10, 11, 12, 13, 0x85) or 23 <= cat <= 25:
        return 3
    if 1 <= cat <= 5:
        return 1
    if 9 <= cat <= 11:
        return 2
    return 0


CONTEXTS = [lambda c: c, lambda c: "a" + c, lambda c: c + "\u0301", lambda c: "\r\u0300" + c,
            lambda c: "\r" + c + "\u0316", lambda c: "a" + c + "\u0300", lambda c: c + c,
            lambda c: "\u1100" + c, lambda c: "\uac00" + c]


def unicode_tables(header_path, fixtures_dir):
    letters, numbers, spaces = hf_matched(r"\p{L}"), hf_matched(r"\p{N}"), hf_matched(r"\s")
    hf_class = bytearray(0x110000)
    for c in CPS:
        hf_class[c] = 1 if c in letters else 2 if c in numbers else 3 if c in spaces else 0
    ranges = []
    for c in CPS:
        if hf_class[c] != utf8proc_class(c):
            if ranges and ranges[-1][1] == c - 1 and ranges[-1][2] == hf_class[c]:
                ranges[-1][1] = c
            else:
                ranges.append([c, c, hf_class[c]])

    nfc = normalizers.NFC()
    barriers, probes = set(), []
    for i in range(0, len(CPS), 4096):
        block = [c for c in CPS[i:i + 4096] if c != ord("|") and c != 0]
        for f in CONTEXTS:
            ins = [f(chr(c)) for c in block]
            joined = "|".join(ins)
            h, u = nfc.normalize_str(joined).split("|"), up_nfc(joined).split("|")
            for c, x, hv, uv in zip(block, ins, h, u):
                if hv != uv:
                    barriers.add(c)
                if hv != x or uv != x or hv != uv:
                    probes.append({"in": x, "out": hv})

    names = {0: "RV_UC_OTHER", 1: "RV_UC_LETTER", 2: "RV_UC_NUMBER", 3: "RV_UC_SPACE"}
    with open(header_path, "w") as f:
        f.write("/* unicode_hf.h — generated by scripts/make-tok-fixtures.py --unicode; do not edit.\n"
                " * Where Hugging Face `tokenizers` 0.23 (Oniguruma with Unicode 16 data, Rust\n"
                " * unicode-normalization) disagrees with utf8proc 2.8 (Unicode 15.0), measured on\n"
                " * every code point. Included by unicode.c only. */\n")
        f.write("static const struct { uint32_t first, last; uint8_t cls; } hf_class_overrides[] = {\n")
        for lo, hi, cls in ranges:
            f.write(f"    {{0x{lo:X}, 0x{hi:X}, {names[cls]}}},\n")
        f.write("};\n\n/* NFC treats these as starters that combine with nothing. */\n")
        f.write("static const uint32_t hf_nfc_barriers[] = {\n")
        bl = sorted(barriers)
        for i in range(0, len(bl), 8):
            f.write("    " + ", ".join(f"0x{c:X}" for c in bl[i:i + 8]) + ",\n")
        f.write("};\n")
    os.makedirs(fixtures_dir, exist_ok=True)
    z = zstandard.ZstdCompressor(level=19)
    with open(os.path.join(fixtures_dir, "uclass.bin.zst"), "wb") as f:
        f.write(z.compress(bytes(hf_class)))
    with open(os.path.join(fixtures_dir, "nfc.jsonl.zst"), "wb") as f:
        f.write(z.compress("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in probes).encode()))
    print(f"{len(ranges)} class ranges, {len(barriers)} NFC barriers, {len(probes)} NFC probes")



def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared", "tokenizers"))
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tok"))
    ap.add_argument("--unicode", action="store_true", help="write lib/unicode_hf.h and the Unicode fixtures")
    ap.add_argument("--header", default=os.path.join(here, "..", "lib", "unicode_hf.h"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.unicode:
        unicode_tables(a.header, a.out)
        return
    corpus = real_corpus() + HAND_WRITTEN
    rnd = random_strings()
    n_bytes = sum(len(d.encode()) for d in corpus)
    print(f"corpus: {len(corpus)} documents, {n_bytes} bytes; random: {len(rnd)} strings", file=sys.stderr)
    write_jsonl(os.path.join(a.out, "corpus.jsonl.zst"), [{"text": d} for d in corpus])
    write_jsonl(os.path.join(a.out, "random.jsonl.zst"), [{"text": d} for d in rnd])
    rng = random.Random(SEED + 1)
    for name, tok in load_all(a.shared, a.gguf).items():
        lists = encode_all(tok, corpus) + encode_all(tok, rnd)
        for h in HAND_WRITTEN:
            lists += encode_all(tok, [h], add_special=True)
            lists += encode_all(tok, [h], special_as_text=True)
        write_ids(os.path.join(a.out, f"{name}.ids.zst"), lists)
        n_ids = tok.get_vocab_size(with_added_tokens=True)
        specials = [i for i in range(n_ids) if tok.id_to_token(i) in
                    {t.content for t in tok.get_added_tokens_decoder().values() if t.special}]
        rows = []
        for ids in random_id_lists(tok, n_ids, rng, specials):
            rows.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                         "text_skip": tok.decode(ids, skip_special_tokens=True)})
        write_jsonl(os.path.join(a.out, f"{name}.decode.jsonl.zst"), rows)
        print(f"{name}: {sum(len(x) for x in lists)} ids", file=sys.stderr)


if __name__ == "__main__":
    main()
