#!/bin/bash
# rv-tokenize: ids against HF's published test vectors, decode round trips,
# chunk streams from JSONL / doc streams / plain text, windows, threads
# giving identical bytes, stream metadata, and the error paths.
. "$(dirname "$0")/lib.sh"
F=$T_ROOT/tests/fixtures/tok
D=$T_DIR
TOKS=${RV_TOKENIZERS:-$T_ROOT/../shared/tokenizers}
if [ ! -d "$TOKS/llama3" ]; then
    echo "SKIP rv-tokenize: $TOKS/llama3 not found (set RV_TOKENIZERS)"
    exit 0
fi
L3=$TOKS/llama3/tokenizer.json
QW=$TOKS/qwen2.5

# HF tokenizers 0.23 ids for this sentence (tokenizers/README.md)
HELLO='Hello world! Revela trains dense retrievers via language modeling, 12345 times.'
printf '{"text":"%s"}\n' "$HELLO" > "$D/hello.jsonl"
t_run_in "$D/hello.jsonl" rv-tokenize -q -t "$L3" --format ids; t_exit ids_exit 0
t_eq ids_llama3 "$(cat "$T_OUT")" "[9906,1917,0,55843,64,28788,29050,10992,3078,4669,4221,34579,11,220,4513,1774,3115,13]"
t_run_in "$D/hello.jsonl" rv-tokenize -q -t "$L3" --format ids --add-special
t_eq ids_llama3_bos "$(cat "$T_OUT")" "[128000,9906,1917,0,55843,64,28788,29050,10992,3078,4669,4221,34579,11,220,4513,1774,3115,13]"
t_run_in "$D/hello.jsonl" rv-tokenize -q -t "$QW" --format ids --add-special
t_eq ids_qwen_no_bos "$(cat "$T_OUT")" "[9707,1879,0,54743,64,27688,27950,10759,3004,4566,4128,33479,11,220,16,17,18,19,20,3039,13]"

# BEIR documents: title and text joined by one space; ids decode back to that text
cat > "$D/corpus.jsonl" <<'EOF'
{"_id":"d1","title":"Dense retrieval","text":"Revela learns retrievers by language modeling. It needs no labels! Mr. Smith agrees."}
{"_id":"d2","title":"","text":"Only text here.\n\nA second paragraph, with <|begin_of_text|> inside."}
{"_id":"d3","title":"Empty","text":""}
{"_id":"d4","title":"Unicode","text":"Ünïcödé — 中文 😀👩‍💻 ١٢٣ done."}
EOF
rv-tokenize -q -t "$L3" --format ids "$D/corpus.jsonl" > "$D/ids.jsonl"
rv-tokenize -q -t "$L3" --decode "$D/ids.jsonl" > "$D/decoded.jsonl"
python3 -c '
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1])]
for d in docs:
    t = d["title"] + " " + d["text"] if d["title"] and d["text"] else d["title"] + d["text"]
    print(json.dumps({"text": t}, ensure_ascii=False, separators=(",", ":")))
' "$D/corpus.jsonl" > "$D/want-decoded.jsonl"
t_files_eq decode_round_trip "$D/decoded.jsonl" "$D/want-decoded.jsonl"
t_run rv-tokenize -q -t "$L3" --decode --skip-special "$D/ids.jsonl"
if grep -q 'begin_of_text' "$T_OUT"; then t_fail skip_special "special token kept"; else t_pass skip_special; fi
t_run rv-tokenize -q -t "$L3" --format ids --special-as-text "$D/corpus.jsonl"
if grep -q '128000' "$T_OUT"; then t_fail special_as_text "128000 matched"; else t_pass special_as_text; fi

# chunk stream: sentence packing, shown with rv-cat (golden); every chunk's
# ids are the ids of its text
t_run rv-tokenize -q -t "$L3" --chunk-words 8 -o "$D/chunks.rvs" "$D/corpus.jsonl"; t_exit chunk_exit 0
t_run rv-cat "$D/chunks.rvs"; t_golden rv-tokenize.chunks
python3 -c '
import json, sys
for l in open(sys.argv[1]):
    c = json.loads(l)
    print(json.dumps({"text": c["text"]}, ensure_ascii=False))
' "$T_OUT" > "$D/chunk-texts.jsonl"
python3 -c '
import json, sys
for l in open(sys.argv[1]):
    print(json.dumps(json.loads(l)["ids"], separators=(",", ":")))
' "$T_OUT" > "$D/chunk-ids.jsonl"
rv-tokenize -q -t "$L3" --format ids "$D/chunk-texts.jsonl" > "$D/chunk-ids-again.jsonl"
t_files_eq chunk_ids_are_text_ids "$D/chunk-ids-again.jsonl" "$D/chunk-ids.jsonl"

# the same documents as a doc stream give the same chunks
rv-cat --encode doc "$D/corpus.jsonl" > "$D/docs.rvs"
rv-tokenize -q -t "$L3" --chunk-words 8 "$D/docs.rvs" -o "$D/chunks2.rvs"
t_files_eq doc_stream_input "$D/chunks2.rvs" "$D/chunks.rvs"
rv-tokenize -q -t "$L3" --chunk-words 8 < "$D/docs.rvs" | rv-cat > "$D/chunks3.jsonl"
rv-cat "$D/chunks.rvs" > "$D/chunks1.jsonl"
t_files_eq doc_stream_stdin "$D/chunks3.jsonl" "$D/chunks1.jsonl"

# threads do not change a byte
python3 -c '
import json
for i in range(3000):
    print(json.dumps({"_id": f"doc{i}", "title": f"Title {i}", "text": " ".join(f"Sentence {j} of document {i} is here." for j in range(i % 17))}))
' > "$D/many.jsonl"
rv-tokenize -q -j 1 -t "$L3" "$D/many.jsonl" -o "$D/j1.rvs"
rv-tokenize -q -j 3 -t "$L3" "$D/many.jsonl" -o "$D/j3.rvs"
t_files_eq threads_same_bytes "$D/j1.rvs" "$D/j3.rvs"
rv-tokenize -q -j 1 -t "$L3" --format ids "$D/many.jsonl" > "$D/j1.ids"
rv-tokenize -q -j 4 -t "$L3" --format ids "$D/many.jsonl" > "$D/j4.ids"
t_files_eq threads_same_ids "$D/j1.ids" "$D/j4.ids"

# metadata: producer, tokenizer path and hash (same file through its directory), parameters
t_run rv-cat --info "$D/chunks.rvs"
meta=$(grep '^metadata:' "$T_OUT")
case "$meta" in *'"chunking":"sentences","chunk_words":8'*'"title":"first"'*) t_pass meta_params ;; *) t_fail meta_params "$meta" ;; esac
h1=$(echo "$meta" | sed 's/.*"tokenizer_hash":"\([0-9a-f]*\)".*/\1/')
rv-tokenize -q -t "$TOKS/llama3" "$D/corpus.jsonl" | rv-cat --info > "$D/info2"
h2=$(grep '^metadata:' "$D/info2" | sed 's/.*"tokenizer_hash":"\([0-9a-f]*\)".*/\1/')
t_eq meta_hash_same_file "$h2" "$h1"
t_eq meta_hash_is_hex16 "${#h1}" 16

# token windows of 6 every 4, and plain-text inputs
t_run rv-tokenize -q -t "$L3" --chunk-tokens 6 --stride 4 "$D/corpus.jsonl"
rv-cat < "$T_OUT" > "$D/win.jsonl"
cp "$D/win.jsonl" "$T_OUT"; t_golden rv-tokenize.windows
printf 'First paragraph line one.\nline two.\n\n\nSecond paragraph.\n  \nThird.\n' > "$D/plain.txt"
rv-tokenize -q -t "$L3" --text "$D/plain.txt" | rv-cat > "$T_OUT"; t_golden rv-tokenize.text
rv-tokenize -q -t "$L3" --text-lines "$D/plain.txt" | rv-cat > "$T_OUT"; t_golden rv-tokenize.text-lines
# invalid UTF-8 in plain text: ids keep the bytes, the chunk text shows U+FFFD
printf 'Bad \377 byte here.\n' > "$D/bad.txt"
rv-tokenize -q -t "$L3" --text "$D/bad.txt" | rv-cat > "$T_OUT"; t_golden rv-tokenize.invalid-utf8

# errors
t_run rv-tokenize --format ids "$D/corpus.jsonl"; t_exit no_tokenizer 2
t_stderr_has no_tokenizer_msg "--tokenizer"
t_run rv-tokenize -t "$L3" --chunk-words 8 --chunk-tokens 4 "$D/corpus.jsonl"; t_exit both_chunkings 2
t_run rv-tokenize -t "$L3" --stride 4 "$D/corpus.jsonl"; t_exit stride_without_tokens 2
t_run rv-tokenize -t "$L3" --format xml "$D/corpus.jsonl"; t_exit bad_format 2
t_run rv-tokenize -t "$L3" --add-special "$D/corpus.jsonl"; t_exit add_special_chunks 2
t_run rv-tokenize -t "$D/nope.json" --format ids "$D/corpus.jsonl"; t_exit missing_tokenizer 1
t_stderr_has missing_tokenizer_msg "nope.json: cannot open"
printf '{"text":"ok"}\n{"text": 5}\n' > "$D/bad.jsonl"
t_run rv-tokenize -q -t "$L3" --format ids "$D/bad.jsonl"; t_exit bad_text_type 1
t_stderr_has bad_text_msg "bad.jsonl:2: \"text\": expected a string, found a number"
printf '{"text":"ok"\n' > "$D/broken.jsonl"
t_run rv-tokenize -q -t "$L3" --format ids "$D/broken.jsonl"; t_exit broken_json 1
t_stderr_has broken_json_msg "broken.jsonl:1:"
printf '[1,2,999999]\n' > "$D/badids.jsonl"
t_run rv-tokenize -q -t "$L3" --decode "$D/badids.jsonl"; t_exit bad_id 1
t_stderr_has bad_id_msg "badids.jsonl:1: [2]: expected a token id"
head -c 60 "$D/docs.rvs" > "$D/trunc.rvs"
t_run rv-tokenize -q -t "$L3" "$D/trunc.rvs" -o "$D/out.rvs"; t_exit truncated_doc_stream 1
t_eq truncated_leaves_no_file "$(ls "$D" | grep -c '^out.rvs')" 0
printf '{"model":{"type":"WordPiece","vocab":{}}}' > "$D/wp.json"
t_run rv-tokenize -t "$D/wp.json" --format ids "$D/corpus.jsonl"; t_exit unsupported_tokenizer 1
t_stderr_has unsupported_tokenizer_msg "model.type: only \"BPE\" is supported"

# the SmolLM2 tokenizer from its GGUF file (fetched by scripts/get-model.sh)
GGUF=${RV_SMOLLM2_GGUF:-}
if [ -z "$GGUF" ] && [ -f "$T_ROOT/scripts/get-model.sh" ]; then GGUF=$(sh "$T_ROOT/scripts/get-model.sh" 2>/dev/null | tail -1); fi
if [ -n "$GGUF" ] && [ -f "$GGUF" ]; then
    t_run_in "$D/hello.jsonl" rv-tokenize -q -t "$GGUF" --format ids; t_exit gguf_ids 0
    # HF's ids for this sentence (it is in the parity fixture); 12345 is five digit tokens
    t_eq gguf_ids_hf "$(cat "$T_OUT")" "[19556,905,17,942,532,81,13420,10395,12394,648,3560,1789,10222,28,216,33,34,35,36,37,1711,30]"
else
    echo "SKIP rv-tokenize/gguf: SmolLM2 GGUF not available (scripts/get-model.sh missing or failed; set RV_SMOLLM2_GGUF)"
fi
