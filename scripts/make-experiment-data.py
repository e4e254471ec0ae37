#!/usr/bin/env python3
"""make-experiment-data.py — the text of `make experiment`, built from what a
Debian machine carries, written as BEIR JSONL (corpus.jsonl: {"_id","title",
"text"}; queries.jsonl: {"_id","text"}; qrels: "query-id\tcorpus-id\tscore").

  train-text  the training text: Python sources of third-party packages
              (one document per top-level function or class, docstrings
              kept: code and its documentation together) and rendered man
              pages of the *training* half of the manual (see SPLIT below)
  code-eval   docstring -> function retrieval (CodeSearchNet style) from a
              different code base than train-text: the query is the first
              paragraph of a function's docstring, the document the
              function's source with the docstring removed
  man-eval    man-page retrieval: the query is the description of a page's
              NAME line ("ls - list directory contents" -> "list directory
              contents"), the document the rendered page without its NAME
              section; pages from the *evaluation* half of the manual only
  subset      a capped sample of a BEIR collection: a random sample of
              queries, every document judged for them, random other
              documents up to the cap

SPLIT: a manual page (by file name) belongs to the evaluation half when the
first hex digit of the MD5 of its name is 0-7, to the training half otherwise,
so the two never overlap whatever sizes are asked. FAMILIES: at most
--per-family pages (default 2) share the first word of their name (split at
- _ .), so that one big family (gcloud ships 16,000 pages) cannot fill a set.

Everything is deterministic for the same machine, options and --seed.
Standard library only (ast, hashlib, random): no third-party package needed.
"""
import argparse
import ast
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import textwrap

MAN_DIRS = ["/usr/share/man/man1", "/usr/share/man/man8"]


def die(msg):
    sys.stderr.write(f"make-experiment-data: {msg}\n")
    sys.exit(1)


def write_jsonl(path, rows):
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_qrels(path, pairs):
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, s in pairs:
            f.write(f"{q}\t{d}\t{s}\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------ Python code

def py_files(root, skip_tests):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__" and not (skip_tests and is_test_name(x)))
        for f in sorted(files):
            if f.endswith(".py") and not (skip_tests and is_test_name(f[:-3])):
                out.append(os.path.join(d, f))
    out.sort()
    return out


def is_test_name(name):
    n = name.lower()
    return n in ("test", "tests", "testing") or n.startswith("test_") or n.endswith("_test") or "tests" in n.split("_")


def parse(path):
    try:
        with open(path, "rb") as f:
            src = f.read().decode("utf-8")
        return src, ast.parse(src)
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError, RecursionError):
        return None, None


def module_name(root, path):
    rel = os.path.relpath(path, root)[:-3]
    return rel.replace(os.sep, ".").removesuffix(".__init__")


def segment(lines, node):
    """Source lines of a definition, decorators included."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return lines[start - 1:node.end_lineno], start


def norm_code(text):
    return re.sub(r"\s+", " ", text).strip()


def functions(tree):
    """Every function and method with its qualified name (nested defs skipped)."""
    out = []

    def walk(body, prefix):
        for n in body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((prefix + n.name, n))
            elif isinstance(n, ast.ClassDef):
                walk(n.body, prefix + n.name + ".")
    walk(tree.body, "")
    return out


def docstring_node(fn):
    b = fn.body
    if b and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant) and isinstance(b[0].value.value, str):
        return b[0]
    return None


def first_paragraph(doc):
    doc = textwrap.dedent(doc).strip()
    para = re.split(r"\n\s*\n", doc, maxsplit=1)[0]
    return " ".join(para.split())


def code_pair(lines, name, fn):
    """(query, code) for a function in CodeSearchNet's spirit, or None: the
    query is the docstring's first paragraph (at least 4 words), the code the
    function without its docstring (at least 3 non-blank lines left); test
    functions and dunder methods are skipped, as CodeSearchNet does."""
    short = name.rsplit(".", 1)[-1]
    if "test" in short.lower() or (short.startswith("__") and short.endswith("__")):
        return None
    ds = docstring_node(fn)
    if ds is None or ds.lineno <= fn.lineno or len(fn.body) < 2:
        return None
    query = first_paragraph(ds.value.value)
    if len(query.split()) < 4 or len(query) > 600:
        return None
    seg, start = segment(lines, fn)
    keep = [ln for i, ln in enumerate(seg, start) if not (ds.lineno <= i <= ds.end_lineno)]
    code = textwrap.dedent("\n".join(keep)).strip("\n")
    if sum(1 for ln in code.splitlines() if ln.strip()) < 3:
        return None
    return query, code


def train_code_docs(root):
    """Top-level functions and classes of every module under root, docstrings
    kept, in file order."""
    for path in py_files(root, skip_tests=True):
        src, tree = parse(path)
        if tree is None:
            continue
        lines = src.splitlines()
        mod = module_name(root, path)
        for n in tree.body:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                seg, _ = segment(lines, n)
                text = "\n".join(seg).strip()
                if len(text.split()) >= 20:
                    yield {"_id": f"{mod}:{n.name}", "title": f"{mod}.{n.name}", "text": text}


def training_signatures(root):
    """Normalised function sources and docstring paragraphs of the training
    code base, to keep any function that also occurs there (vendored copies
    of the standard library, e.g. setuptools/_distutils) out of code-eval."""
    codes, docs = set(), set()
    for path in py_files(root, skip_tests=False):
        src, tree = parse(path)
        if tree is None:
            continue
        lines = src.splitlines()
        for name, fn in functions(tree):
            p = code_pair(lines, name, fn)
            if p:
                docs.add(p[0].lower())
                codes.add(norm_code(p[1]))
    return codes, docs


# ------------------------------------------------------------------ man pages

def man_half(name):
    return "eval" if hashlib.md5(name.encode()).hexdigest()[0] in "01234567" else "train"


def man_family(name):
    return re.split(r"[-_.]", name, maxsplit=1)[0]


def man_pages(half):
    """Page files of one half of the manual, sorted; symbolic links and
    '.so' include stubs are skipped (they duplicate another page)."""
    out = []
    for d in MAN_DIRS:
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            p = os.path.join(d, f)
            if not f.endswith(".gz") or os.path.islink(p):
                continue
            name = f[:-3]
            if man_half(name) != half:
                continue
            try:
                with gzip.open(p, "rb") as g:
                    head = g.read(200)
            except OSError:
                continue
            if head.startswith(b".so "):
                continue
            out.append((name, p))
    return out


def render(path):
    """The page as plain text (no hyphenation or justification, one line per
    paragraph), header and footer lines dropped."""
    env = dict(os.environ, MANWIDTH="1000", LC_ALL="C.UTF-8")
    try:
        man = subprocess.run(["man", "--nh", "--nj", "-P", "cat", "-l", path], env=env,
                             capture_output=True, timeout=60)
        col = subprocess.run(["col", "-b", "-x"], input=man.stdout, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = col.stdout.decode("utf-8", "replace").splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines[1:-1] if len(lines) > 2 else None


def sections(lines):
    """[(HEADER, [body lines])] — headers are the lines that start in column 0."""
    out = []
    for ln in lines:
        if ln and not ln[0].isspace():
            out.append((ln.strip(), []))
        elif out:
            out[-1][1].append(ln.strip())
    return out


def squash(lines):
    return re.sub(r"[ \t]+", " ", "\n".join(x for x in lines if x)).strip()


def man_doc(name, path):
    lines = render(path)
    if not lines:
        return None
    secs = sections(lines)
    if not secs or secs[0][0] != "NAME":
        return None
    name_line = " ".join(" ".join(secs[0][1]).split())
    m = re.match(r"^(.*?)\s+(?:-|\u2010|\u2013|\u2014|\\-)+\s+(.+)$", name_line)
    if not m:
        return None
    body = "\n".join(h + "\n" + squash(b) for h, b in secs[1:])
    return {"name": name, "names": m.group(1), "description": m.group(2).strip(), "body": body,
            "full": "NAME\n" + name_line + "\n" + body}


# ------------------------------------------------------------------ commands

def cmd_train_text(a):
    if not os.path.isdir(a.code_root):
        die(f"{a.code_root}: not a directory")
    docs = list(train_code_docs(a.code_root))
    if not docs:
        die(f"{a.code_root}: no Python function or class found")
    # a fixed stride over the sorted list spreads the sample over all packages
    stride = max(1, len(docs) // a.code_docs) if a.code_docs else 1
    code = docs[::stride][:a.code_docs] if a.code_docs else docs
    n_man = 0
    out = sys.stdout
    for d in code:
        out.write(json.dumps(d, ensure_ascii=False) + "\n")
    pages = man_pages("train")
    stride = max(1, len(pages) // a.man_pages) if a.man_pages else 1
    fam = {}
    for name, path in pages[::stride] + pages:
        if n_man >= a.man_pages:
            break
        if fam.get(man_family(name), 0) >= a.per_family or fam.get(name):
            continue
        fam[name] = 1
        d = man_doc(name, path)
        if d is None or len(d["full"]) < 400:
            continue
        out.write(json.dumps({"_id": "man:" + name, "title": name, "text": d["full"]}, ensure_ascii=False) + "\n")
        fam[man_family(name)] = fam.get(man_family(name), 0) + 1
        n_man += 1
    sys.stderr.write(f"make-experiment-data: train-text: {len(code)} code documents (of {len(docs)} under "
                     f"{a.code_root}), {n_man} man pages (training half)\n")


def cmd_code_eval(a):
    if not os.path.isdir(a.root):
        die(f"{a.root}: not a directory")
    seen_code, seen_doc = training_signatures(a.exclude_root) if a.exclude_root else (set(), set())
    pairs, dropped = [], 0
    codes_here, docs_here = set(), set()
    for path in py_files(a.root, skip_tests=True):
        src, tree = parse(path)
        if tree is None:
            continue
        lines = src.splitlines()
        mod = module_name(a.root, path)
        for name, fn in functions(tree):
            p = code_pair(lines, name, fn)
            if not p:
                continue
            q, c = p
            nc, nq = norm_code(c), q.lower()
            if nc in seen_code or nq in seen_doc:
                dropped += 1
                continue
            # one function per code text and per query text: a duplicate would
            # be a second, unjudged right answer
            if nc in codes_here or nq in docs_here:
                continue
            codes_here.add(nc)
            docs_here.add(nq)
            pairs.append((f"{mod}.{name}", q, c))
    if len(pairs) < a.queries:
        die(f"only {len(pairs)} docstring/function pairs under {a.root}")
    rng = random.Random(a.seed)
    rng.shuffle(pairs)
    corpus = pairs[:max(a.docs, a.queries)] if a.docs else pairs
    queries = corpus[:a.queries]
    os.makedirs(a.out, exist_ok=True)
    write_jsonl(os.path.join(a.out, "corpus.jsonl"), ({"_id": i, "title": "", "text": c} for i, _, c in corpus))
    write_jsonl(os.path.join(a.out, "queries.jsonl"), ({"_id": f"q{n}", "text": q} for n, (_, q, _) in enumerate(queries)))
    write_qrels(os.path.join(a.out, "qrels.tsv"), ((f"q{n}", i, 1) for n, (i, _, _) in enumerate(queries)))
    sys.stderr.write(f"make-experiment-data: code-eval: {len(pairs)} pairs under {a.root} ({dropped} dropped as also "
                     f"in {a.exclude_root}); {len(corpus)} functions, {len(queries)} queries\n")


def cmd_man_eval(a):
    pages = man_pages("eval")
    if not pages:
        die("no manual pages in " + " ".join(MAN_DIRS))
    rng = random.Random(a.seed)
    rng.shuffle(pages)
    docs, seen_desc, seen_body, fam = [], set(), set(), {}
    for name, path in pages:
        if a.docs and len(docs) >= a.docs:
            break
        if fam.get(man_family(name), 0) >= a.per_family:
            continue
        d = man_doc(name, path)
        if d is None or len(d["body"]) < 200 or len(d["description"].split()) < 2:
            continue
        dk, bk = d["description"].lower(), hashlib.md5(d["body"].encode()).hexdigest()
        # pages that share a description or a body (aliases, translations)
        # would give a query two right answers of which one is unjudged
        if dk in seen_desc or bk in seen_body:
            continue
        seen_desc.add(dk)
        seen_body.add(bk)
        fam[man_family(name)] = fam.get(man_family(name), 0) + 1
        docs.append(d)
    if len(docs) < a.queries:
        die(f"only {len(docs)} usable pages in the evaluation half of the manual")
    queries = docs[:a.queries]
    os.makedirs(a.out, exist_ok=True)
    write_jsonl(os.path.join(a.out, "corpus.jsonl"), ({"_id": d["name"], "title": "", "text": d["body"]} for d in docs))
    write_jsonl(os.path.join(a.out, "queries.jsonl"), ({"_id": "q:" + d["name"], "text": d["description"]} for d in queries))
    write_qrels(os.path.join(a.out, "qrels.tsv"), (("q:" + d["name"], d["name"], 1) for d in queries))
    sys.stderr.write(f"make-experiment-data: man-eval: {len(docs)} pages, {len(queries)} queries "
                     f"(evaluation half: {len(pages)} page files)\n")


def cmd_subset(a):
    def load(p):
        with open(p, encoding="utf-8") as f:
            return [json.loads(x) for x in f if x.strip()]
    corpus = load(os.path.join(a.coll, "corpus.jsonl"))
    queries = load(os.path.join(a.coll, "queries.jsonl"))
    judged = {}
    with open(os.path.join(a.coll, "qrels", "test.tsv"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            q, d, s = line.rstrip("\n").split("\t")
            if i == 0 and q == "query-id":
                continue
            judged.setdefault(q, []).append((d, int(s)))
    rng = random.Random(a.seed)
    order = list(range(len(queries)))
    rng.shuffle(order)
    max_docs = a.docs or len(corpus)
    keep_q, keep_d = [], set()
    for i in order:
        if a.queries and len(keep_q) >= a.queries:
            break
        q = queries[i]
        ds = {d for d, _ in judged.get(q["_id"], [])}
        # a query comes in with all its judged documents, or not at all
        if any(s > 0 for _, s in judged.get(q["_id"], [])) and len(keep_d | ds) <= max_docs:
            keep_q.append(i)
            keep_d |= ds
    rest = [d["_id"] for d in corpus if d["_id"] not in keep_d]
    rng.shuffle(rest)
    keep_d |= set(rest[:max(0, max_docs - len(keep_d))])
    os.makedirs(a.out, exist_ok=True)
    write_jsonl(os.path.join(a.out, "corpus.jsonl"), (d for d in corpus if d["_id"] in keep_d))
    qs = [queries[i] for i in sorted(keep_q)]
    write_jsonl(os.path.join(a.out, "queries.jsonl"), qs)
    write_qrels(os.path.join(a.out, "qrels.tsv"), ((q["_id"], d, s) for q in qs for d, s in judged[q["_id"]]))
    sys.stderr.write(f"make-experiment-data: subset {a.coll}: {len(keep_d)} of {len(corpus)} documents, "
                     f"{len(qs)} of {len(queries)} queries\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train-text", help="training text (JSONL on standard output)")
    p.add_argument("--code-root", default="/usr/lib/python3/dist-packages")
    p.add_argument("--code-docs", type=int, default=2000, help="code documents (0: all)")
    p.add_argument("--man-pages", type=int, default=200, help="man pages of the training half")
    p.add_argument("--per-family", type=int, default=2)
    p = sub.add_parser("code-eval", help="docstring -> function task into --out")
    p.add_argument("--root", default="/usr/lib/python3.11")
    p.add_argument("--exclude-root", default="/usr/lib/python3/dist-packages")
    p.add_argument("--docs", type=int, default=400, help="functions in the corpus (0: all)")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    p = sub.add_parser("man-eval", help="man page NAME -> page task into --out")
    p.add_argument("--docs", type=int, default=300, help="pages in the corpus (0: every usable page)")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--per-family", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    p = sub.add_parser("subset", help="capped sample of a BEIR collection into --out")
    p.add_argument("--coll", required=True)
    p.add_argument("--docs", type=int, default=300, help="document cap (0: all)")
    p.add_argument("--queries", type=int, default=50, help="query cap (0: all)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    a = ap.parse_args()
    {"train-text": cmd_train_text, "code-eval": cmd_code_eval, "man-eval": cmd_man_eval, "subset": cmd_subset}[a.cmd](a)


if __name__ == "__main__":
    main()
