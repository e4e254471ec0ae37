/* rv-tokenize — documents to chunk streams (sentence-packed or token
 * windows), text to token ids, ids back to text. Wiring only: the tokenizer
 * is lib/tokenizer.c, chunking lib/chunker.c, sentences lib/sentence.c.
 *
 * Work is done in batches of documents: the main thread reads a batch,
 * OpenMP threads process its documents in any order into per-document
 * output buffers, and the main thread writes them in input order. */
#include "buf.h"
#include "chunker.h"
#include "cli.h"
#include "error.h"
#include "json.h"
#include "lines.h"
#include "progress.h"
#include "records.h"
#include "stream.h"
#include "tokenizer.h"
#include "unicode.h"
#include "version.h"

#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MODE_CHUNK, MODE_IDS, MODE_DECODE };
enum { INPUT_AUTO, INPUT_TEXT_PARA, INPUT_TEXT_LINES };
enum { BATCH_ITEMS = 4096, BATCH_BYTES = 4 << 20 };

typedef struct {
    int mode;
    int input;
    const char *tokenizer_path;
    uint32_t chunk_words, chunk_tokens, stride;
    int include_title;
    int tok_flags;          /* encode flags (ids mode) */
    int decode_flags;
    int threads;
} options;

_Noreturn static void usage(void)
{
    printf("Usage: rv-tokenize --tokenizer PATH [OPTION]... [FILE]\n"
           "Cut documents into chunks with their token ids (a chunk stream), or turn text into token ids\n"
           "and ids into text, exactly as Hugging Face tokenizers does for the same tokenizer.\n"
           "FILE (default: standard input) is BEIR corpus JSONL ({\"_id\",\"title\",\"text\"}) or {\"text\"} lines,\n"
           "a doc stream (detected by its zstd magic), or plain text with --text/--text-lines.\n"
           "\n"
           "  -t, --tokenizer PATH  tokenizer.json, a directory holding one (or GPT-2's encoder.json +\n"
           "                        vocab.bpe), or a GGUF model file\n"
           "      --chunk-words N   pack whole sentences into chunks of at most N words (default 120)\n"
           "      --chunk-tokens N  cut each document's ids into windows of N tokens instead\n"
           "      --stride S        with --chunk-tokens: start a window every S tokens (default N)\n"
           "      --title MODE      first: the title is the first sentence of the document (default);\n"
           "                        none: titles are ignored when chunking\n"
           "      --format F        chunk: write a chunk stream (default); ids: one JSON array of ids per\n"
           "                        document (title and text joined by one space)\n"
           "      --add-special     with --format ids: add the tokenizer's template tokens (BOS for Llama-3)\n"
           "      --special-as-text do not turn special-token strings in the text into special tokens\n"
           "      --decode          read JSON arrays of ids, write {\"text\": …} lines\n"
           "      --skip-special    with --decode: leave special tokens out of the text\n"
           "      --text            input is plain text, one document per blank-line-separated block\n"
           "      --text-lines      input is plain text, one document per line\n"
           "  -j, --threads N       worker threads (default: the number of CPUs)\n"
           "  -o, --output FILE     write FILE (atomically, via FILE.part) instead of standard output\n"
           "  -f, --force           write a binary stream even when standard output is a terminal\n"
           "  -l, --level N         zstd level of the chunk stream (default 1, or $RV_ZSTD_LEVEL)\n"
           "  -q, --quiet           no progress lines\n"
           "  -h, --help            show this help and exit\n"
           "  -V, --version         show the version and exit\n"
           "\n"
           "Exit status: 0 success, 1 bad data or I/O error, 2 usage error. See rv-tokenize(1). Example:\n"
           "  rv-tokenize -t tokenizer.json --chunk-words 120 corpus.jsonl -o chunks.rvs\n");
    exit(RV_EXIT_OK);
}

/* ------------------------------------------------------------ batches */

typedef struct {
    /* input: offsets into the batch arena */
    size_t in_off, in_len;          /* JSONL line, decode line, or text */
    size_t id_off, id_len, title_off, title_len;
    size_t lineno;
    int kind;                       /* 0 raw line (JSON), 1 ready document */
    /* output */
    rv_buf out;                     /* JSON line(s), or framed records: u32 len + record */
    uint32_t n_records;
    uint64_t n_tokens;
    char *err;
} item;

typedef struct {
    rv_buf arena;
    item *items;
    size_t n, cap;
} batch;

typedef struct {
    rv_tok_state *tok;
    rv_json_parser *json;
    rv_ids ids;
    rv_buf text, scratch, rec;
    rv_chunk_list chunks;
} worker;

static item *batch_add(batch *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        item *v = realloc(b->items, cap * sizeof *v);
        if (!v)
            rv_die("out of memory");
        memset(v + b->cap, 0, (cap - b->cap) * sizeof *v);
        b->items = v;
        b->cap = cap;
    }
    item *it = &b->items[b->n++];
    it->out.len = 0;
    it->n_records = 0;
    it->n_tokens = 0;
    free(it->err);
    it->err = NULL;
    it->in_len = it->id_len = it->title_len = 0;
    it->in_off = it->id_off = it->title_off = 0;
    return it;
}

static size_t arena_put(batch *b, const void *p, size_t n)
{
    size_t off = b->arena.len;
    if (rv_buf_append(&b->arena, p, n) < 0)
        rv_die_lib();
    return off;
}

static void item_fail(item *it, const char *where)
{
    const char *msg = rv_error_get();
    size_t n = strlen(where) + strlen(msg) + 4;
    it->err = malloc(n);
    if (it->err)
        snprintf(it->err, n, "%s: %s", where, msg);
}

/* ------------------------------------------------------------ per-document work */

static int put_ids_json(rv_buf *out, const uint32_t *ids, size_t n)
{
    if (rv_buf_reserve(out, n * 11 + 3) < 0)
        return -1;
    char *p = (char *)out->data + out->len, *start = p;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        char tmp[10];
        int k = 0;
        uint32_t v = ids[i];
        do { tmp[k++] = (char)('0' + v % 10); v /= 10; } while (v);
        while (k)
            *p++ = tmp[--k];
    }
    *p++ = ']';
    *p++ = '\n';
    out->len += (size_t)(p - start);
    return 0;
}

static int frame_record(item *it, const rv_buf *rec)
{
    if (rv_buf_put_u32(&it->out, (uint32_t)rec->len) < 0 || rv_buf_append(&it->out, rec->data, rec->len) < 0)
        return -1;
    it->n_records++;
    return 0;
}

/* The document's fields, from its JSON line or the arena. */
typedef struct { const char *id, *title, *text; size_t id_len, title_len, text_len; } doc_view;

static int parse_doc_line(worker *w, const char *line, size_t len, doc_view *d)
{
    const rv_json *v = rv_json_parse(w->json, line, len);
    if (!v)
        return -1;
    if (v->type != RV_JSON_OBJECT)
        return rv_error_set("expected a JSON object, found %s", rv_json_type_name(v->type));
    const rv_json *text = rv_json_get(v, "text"), *title = rv_json_get(v, "title"), *id = rv_json_get(v, "_id");
    if (!id)
        id = rv_json_get(v, "id");
    if (!text || text->type != RV_JSON_STRING)
        return rv_error_set("\"text\": expected a string, found %s",
                            text ? rv_json_type_name(text->type) : "nothing");
    if (title && title->type != RV_JSON_STRING && title->type != RV_JSON_NULL)
        return rv_error_set("\"title\": expected a string, found %s", rv_json_type_name(title->type));
    if (id && id->type != RV_JSON_STRING)
        return rv_error_set("\"_id\": expected a string, found %s", rv_json_type_name(id->type));
    d->text = text->u.string;
    d->text_len = text->len;
    d->title = title && title->type == RV_JSON_STRING ? title->u.string : "";
    d->title_len = title && title->type == RV_JSON_STRING ? title->len : 0;
    d->id = id ? id->u.string : NULL;
    d->id_len = id ? id->len : 0;
    return 0;
}

/* "title text" (no space when either is empty) into w->text. */
static int joined_text(worker *w, const doc_view *d)
{
    w->text.len = 0;
    if (rv_buf_append(&w->text, d->title, d->title_len) < 0)
        return -1;
    if (d->title_len && d->text_len && rv_buf_putc(&w->text, ' ') < 0)
        return -1;
    return rv_buf_append(&w->text, d->text, d->text_len);
}

static int do_ids(const rv_tokenizer *t, const options *o, worker *w, item *it, const doc_view *d)
{
    if (joined_text(w, d) < 0)
        return -1;
    w->ids.n = 0;
    if (rv_tok_encode(t, w->tok, (const char *)w->text.data, w->text.len, o->tok_flags, &w->ids) < 0)
        return -1;
    it->n_tokens = w->ids.n;
    return put_ids_json(&it->out, w->ids.v, w->ids.n);
}

static int do_chunks(const rv_tokenizer *t, const options *o, worker *w, item *it, const doc_view *d)
{
    int flags = o->tok_flags & RV_TOK_SPECIAL_AS_TEXT;
    if (o->chunk_tokens) {
        doc_view dv = *d;
        if (!o->include_title)
            dv.title_len = 0;
        if (joined_text(w, &dv) < 0)
            return -1;
        rv_ids all = {0};
        if (rv_tok_encode(t, w->tok, (const char *)w->text.data, w->text.len, flags, &all) < 0)
            return -1;
        size_t a, b;
        int rc = 0;
        for (size_t k = 0; rc == 0 && rv_chunk_window(all.n, o->chunk_tokens, o->stride, k, &a, &b); k++) {
            w->text.len = 0;
            if (k > UINT32_MAX || b - a > UINT32_MAX) {
                rc = rv_error_set("document too long");
                break;
            }
            rc = rv_chunk_window_text(t, all.v + a, b - a, &w->text, &w->scratch);
            if (rc == 0)
                rc = rv_chunk_encode(&w->rec, d->id, d->id_len, (uint32_t)k, (const char *)w->text.data, w->text.len,
                                     all.v + a, (uint32_t)(b - a));
            if (rc == 0)
                rc = frame_record(it, &w->rec);
            it->n_tokens += b - a;
        }
        rv_ids_free(&all);
        return rc;
    }
    if (rv_chunk_by_words(d->title, d->title_len, d->text, d->text_len, o->chunk_words, o->include_title,
                          &w->chunks) < 0)
        return -1;
    for (size_t k = 0; k < w->chunks.n; k++) {
        if (rv_chunk_span_text(d->title, d->text, &w->chunks.v[k], &w->scratch) < 0)
            return -1;
        /* chunk texts must be valid UTF-8 (plain-text input may not be) */
        const rv_buf *txt = &w->scratch;
        if (!rv_utf8_valid((const char *)w->scratch.data, w->scratch.len)) {
            w->text.len = 0;
            if (rv_utf8_lossy_append(w->scratch.data, w->scratch.len, &w->text) < 0)
                return -1;
            txt = &w->text;
        }
        w->ids.n = 0;
        if (rv_tok_encode(t, w->tok, (const char *)txt->data, txt->len, flags, &w->ids) < 0)
            return -1;
        if (w->ids.n > UINT32_MAX)
            return rv_error_set("chunk too long");
        if (rv_chunk_encode(&w->rec, d->id, d->id_len, (uint32_t)k, (const char *)txt->data, txt->len, w->ids.v,
                            (uint32_t)w->ids.n) < 0 ||
            frame_record(it, &w->rec) < 0)
            return -1;
        it->n_tokens += w->ids.n;
    }
    return 0;
}

static int do_decode(const rv_tokenizer *t, const options *o, worker *w, item *it, const char *line, size_t len)
{
    const rv_json *v = rv_json_parse(w->json, line, len);
    if (!v)
        return -1;
    if (v->type != RV_JSON_ARRAY)
        return rv_error_set("expected a JSON array of token ids, found %s", rv_json_type_name(v->type));
    w->ids.n = 0;
    for (size_t i = 0; i < v->len; i++) {
        int64_t id;
        if (rv_json_as_int64(&v->u.items[i], &id) < 0 || id < 0 || id >= rv_tokenizer_n_ids(t))
            return rv_error_set("[%zu]: expected a token id in 0..%u", i, rv_tokenizer_n_ids(t) - 1);
        if (rv_ids_push(&w->ids, (uint32_t)id) < 0)
            return -1;
    }
    w->scratch.len = w->text.len = 0;
    if (rv_tok_decode(t, w->ids.v, w->ids.n, o->decode_flags, &w->scratch) < 0 ||
        rv_utf8_lossy_append(w->scratch.data, w->scratch.len, &w->text) < 0)
        return -1;
    it->n_tokens = w->ids.n;
    if (rv_buf_append(&it->out, "{\"text\":", 8) < 0 ||
        rv_json_put_string(&it->out, (const char *)w->text.data, w->text.len) < 0 || rv_buf_append(&it->out, "}\n", 2) < 0)
        return -1;
    return 0;
}

static void process_item(const rv_tokenizer *t, const options *o, worker *w, const batch *b, item *it,
                         const char *input_name)
{
    const char *in = (const char *)b->arena.data + it->in_off;
    char where[512], line_id[24];
    snprintf(line_id, sizeof line_id, "%zu", it->lineno);
    if (it->lineno)
        snprintf(where, sizeof where, "%s:%zu", input_name, it->lineno);
    else
        snprintf(where, sizeof where, "%s", input_name);
    int rc;
    if (o->mode == MODE_DECODE) {
        rc = do_decode(t, o, w, it, in, it->in_len);
    } else {
        doc_view d = {0};
        if (it->kind == 0) {
            rc = parse_doc_line(w, in, it->in_len, &d);
            if (rc == 0 && !d.id) { /* no id: the line number stands in */
                d.id = line_id;
                d.id_len = strlen(line_id);
            }
        } else {
            d.text = in;
            d.text_len = it->in_len;
            d.title = (const char *)b->arena.data + it->title_off;
            d.title_len = it->title_len;
            d.id = (const char *)b->arena.data + it->id_off;
            d.id_len = it->id_len;
            rc = 0;
        }
        if (rc == 0)
            rc = o->mode == MODE_IDS ? do_ids(t, o, w, it, &d) : do_chunks(t, o, w, it, &d);
    }
    if (rc < 0)
        item_fail(it, where);
}

/* ------------------------------------------------------------ input */

typedef struct {
    FILE *f;
    const char *name;
    rv_stream_reader *docs;       /* doc stream input */
    rv_lines lines;
    int text_mode;
    int done;
    size_t lineno;                /* for text paragraphs */
    rv_buf para;
    size_t para_line;
    uint64_t n_docs;
} input;

/* Fills the batch; returns the number of items (0 at the end). */
static size_t read_batch(input *in, const options *o, batch *b)
{
    b->n = 0;
    b->arena.len = 0;
    while (!in->done && b->n < BATCH_ITEMS && b->arena.len < BATCH_BYTES) {
        if (in->docs) {
            const unsigned char *rec;
            size_t len;
            int rc = rv_stream_read(in->docs, &rec, &len);
            if (rc < 0)
                rv_die_lib();
            if (rc == 0) {
                in->done = 1;
                break;
            }
            rv_doc d;
            if (rv_doc_decode(rec, len, &d) < 0)
                rv_die("%s: record %llu: %s", in->name, (unsigned long long)rv_stream_reader_count(in->docs) - 1,
                       rv_error_get());
            item *it = batch_add(b);
            it->kind = 1;
            it->lineno = 0;
            it->id_off = arena_put(b, d.id.p, d.id.len);
            it->id_len = d.id.len;
            it->title_off = arena_put(b, d.title.p, d.title.len);
            it->title_len = d.title.len;
            it->in_off = arena_put(b, d.text.p, d.text.len);
            it->in_len = d.text.len;
            continue;
        }
        char *line;
        size_t len;
        int rc = rv_lines_next(&in->lines, &line, &len);
        if (rc < 0)
            rv_die("%s: %s", in->name, rv_error_get());
        if (in->text_mode) {
            int blank = 1;
            for (size_t i = 0; i < len && blank; i++)
                blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\f' || line[i] == '\v';
            int flush = rc == 0 || (o->input == INPUT_TEXT_LINES ? !blank : blank);
            if (o->input == INPUT_TEXT_LINES && rc == 1 && !blank) {
                in->para.len = 0;
                if (rv_buf_append(&in->para, line, len) < 0)
                    rv_die_lib();
                in->para_line = in->lines.lineno;
            } else if (rc == 1 && !blank) {
                if (in->para.len == 0)
                    in->para_line = in->lines.lineno;
                else if (rv_buf_putc(&in->para, '\n') < 0)
                    rv_die_lib();
                if (rv_buf_append(&in->para, line, len) < 0)
                    rv_die_lib();
            }
            if (flush && in->para.len) {
                char id[32];
                int idl = snprintf(id, sizeof id, "%zu", in->para_line);
                item *it = batch_add(b);
                it->kind = 1;
                it->lineno = in->para_line;
                it->id_off = arena_put(b, id, (size_t)idl);
                it->id_len = (size_t)idl;
                it->title_off = 0;
                it->title_len = 0;
                it->in_off = arena_put(b, in->para.data, in->para.len);
                it->in_len = in->para.len;
                in->para.len = 0;
            }
            if (rc == 0)
                in->done = 1;
            continue;
        }
        if (rc == 0) {
            in->done = 1;
            break;
        }
        size_t j = 0;
        while (j < len && (line[j] == ' ' || line[j] == '\t'))
            j++;
        if (j == len)
            continue; /* blank lines between records are allowed */
        item *it = batch_add(b);
        it->kind = 0;
        it->lineno = in->lines.lineno;
        it->in_off = arena_put(b, line, len);
        it->in_len = len;
    }
    return b->n;
}

static void open_input(input *in, const char *path, const options *o)
{
    memset(in, 0, sizeof *in);
    in->name = !path || strcmp(path, "-") == 0 ? "<stdin>" : path;
    in->f = rv_open_input(path, 0);
    in->text_mode = o->input != INPUT_AUTO;
    if (!in->text_mode && o->mode != MODE_DECODE) {
        int c = getc(in->f);
        if (c != EOF && ungetc(c, in->f) == EOF)
            rv_die("%s: read error", in->name);
        if (c == 0x28) { /* the zstd frame magic 28 B5 2F FD: a doc stream */
            in->docs = rv_stream_reader_open(in->f, path);
            if (!in->docs || rv_stream_reader_expect(in->docs, "doc", RV_DOC_VERSION) < 0)
                rv_die_lib();
            return;
        }
    }
    rv_lines_init(&in->lines, in->f);
}

static void close_input(input *in)
{
    if (in->docs)
        rv_stream_reader_close(in->docs);
    else
        rv_lines_free(&in->lines);
    rv_buf_free(&in->para);
    rv_close_input(in->f);
}

/* ------------------------------------------------------------ main */

static void metadata(rv_buf *m, const options *o, const rv_tokenizer *t)
{
    rv_buf_printf(m, "{\"producer\":\"rv-tokenize %s\",\"tokenizer\":", RV_VERSION);
    rv_json_put_string(m, o->tokenizer_path, strlen(o->tokenizer_path));
    rv_buf_printf(m, ",\"tokenizer_hash\":\"%016llx\",\"tokenizer_source\":\"%s\",\"tokenizer_ids\":%u",
                  (unsigned long long)rv_tokenizer_file_hash(t), rv_tokenizer_source_kind(t), rv_tokenizer_n_ids(t));
    if (o->chunk_tokens)
        rv_buf_printf(m, ",\"chunking\":\"tokens\",\"chunk_tokens\":%u,\"stride\":%u", o->chunk_tokens, o->stride);
    else
        rv_buf_printf(m, ",\"chunking\":\"sentences\",\"chunk_words\":%u", o->chunk_words);
    rv_buf_printf(m, ",\"title\":\"%s\",\"special_as_text\":%s}", o->include_title ? "first" : "none",
                  (o->tok_flags & RV_TOK_SPECIAL_AS_TEXT) ? "true" : "false");
}

int main(int argc, char **argv)
{
    rv_cli_init("rv-tokenize");
    enum { O_CHUNK_WORDS = 256, O_CHUNK_TOKENS, O_STRIDE, O_TITLE, O_FORMAT, O_ADD_SPECIAL, O_SPECIAL_TEXT,
           O_DECODE, O_SKIP_SPECIAL, O_TEXT, O_TEXT_LINES };
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'},   {"chunk-words", required_argument, 0, O_CHUNK_WORDS},
        {"chunk-tokens", required_argument, 0, O_CHUNK_TOKENS}, {"stride", required_argument, 0, O_STRIDE},
        {"title", required_argument, 0, O_TITLE},  {"format", required_argument, 0, O_FORMAT},
        {"add-special", no_argument, 0, O_ADD_SPECIAL}, {"special-as-text", no_argument, 0, O_SPECIAL_TEXT},
        {"decode", no_argument, 0, O_DECODE},       {"skip-special", no_argument, 0, O_SKIP_SPECIAL},
        {"text", no_argument, 0, O_TEXT},           {"text-lines", no_argument, 0, O_TEXT_LINES},
        {"threads", required_argument, 0, 'j'},     {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},             {"level", required_argument, 0, 'l'},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},           {0, 0, 0, 0}};
    options o = {MODE_CHUNK, INPUT_AUTO, NULL, 0, 0, 0, 1, 0, 0, 0};
    const char *output = NULL, *format = NULL;
    int force = 0, level = 0, quiet = 0, c, decode = 0, add_special = 0, skip_special = 0, stride_set = 0;
    int chunk_words_set = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = ncpu > 0 ? (int)ncpu : 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:j:o:fl:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 't': o.tokenizer_path = optarg; break;
        case O_CHUNK_WORDS: o.chunk_words = (uint32_t)rv_parse_uint("--chunk-words", optarg, UINT32_MAX); chunk_words_set = 1; break;
        case O_CHUNK_TOKENS: o.chunk_tokens = (uint32_t)rv_parse_uint("--chunk-tokens", optarg, UINT32_MAX); break;
        case O_STRIDE: o.stride = (uint32_t)rv_parse_uint("--stride", optarg, UINT32_MAX); stride_set = 1; break;
        case O_TITLE:
            if (strcmp(optarg, "first") == 0) o.include_title = 1;
            else if (strcmp(optarg, "none") == 0) o.include_title = 0;
            else rv_die_usage("--title: expected first or none, found \"%s\"", optarg);
            break;
        case O_FORMAT: format = optarg; break;
        case O_ADD_SPECIAL: add_special = 1; break;
        case O_SPECIAL_TEXT: o.tok_flags |= RV_TOK_SPECIAL_AS_TEXT; break;
        case O_DECODE: decode = 1; break;
        case O_SKIP_SPECIAL: skip_special = 1; break;
        case O_TEXT: o.input = INPUT_TEXT_PARA; break;
        case O_TEXT_LINES: o.input = INPUT_TEXT_LINES; break;
        case 'j': o.threads = (int)rv_parse_uint("--threads", optarg, 1024); break;
        case 'o': output = optarg; break;
        case 'f': force = 1; break;
        case 'l': level = (int)rv_parse_uint("--level", optarg, 22); break;
        case 'q': quiet = 1; break;
        case 'h': usage();
        case 'V': rv_print_version();
        default: rv_die_bad_option(c, argv);
        }
    }
    if (!o.tokenizer_path)
        rv_die_usage("--tokenizer PATH is required");
    if (argc - optind > 1)
        rv_die_usage("at most one input FILE, found %d", argc - optind);
    if (o.threads < 1)
        rv_die_usage("--threads must be at least 1");
    if (format && strcmp(format, "ids") == 0)
        o.mode = MODE_IDS;
    else if (format && strcmp(format, "chunk") != 0)
        rv_die_usage("--format: expected chunk or ids, found \"%s\"", format);
    if (decode) {
        if (format || o.chunk_tokens || chunk_words_set || o.input != INPUT_AUTO || add_special)
            rv_die_usage("--decode takes none of --format, --chunk-*, --text, --add-special");
        o.mode = MODE_DECODE;
    }
    if (skip_special && !decode)
        rv_die_usage("--skip-special only applies to --decode");
    if (add_special && o.mode != MODE_IDS)
        rv_die_usage("--add-special only applies to --format ids (chunks never carry special tokens)");
    if (o.mode != MODE_CHUNK && (o.chunk_tokens || chunk_words_set || stride_set))
        rv_die_usage("--chunk-words, --chunk-tokens and --stride only apply to chunk output");
    if (o.chunk_tokens && chunk_words_set)
        rv_die_usage("--chunk-words and --chunk-tokens cannot be combined");
    if (stride_set && !o.chunk_tokens)
        rv_die_usage("--stride needs --chunk-tokens");
    if (chunk_words_set && o.chunk_words == 0)
        rv_die_usage("--chunk-words must be at least 1");
    if (o.chunk_tokens && o.stride == 0)
        o.stride = o.chunk_tokens;
    if (stride_set && o.stride == 0)
        rv_die_usage("--stride must be at least 1");
    if (!o.chunk_tokens && !chunk_words_set)
        o.chunk_words = 120;
    if (add_special)
        o.tok_flags |= RV_TOK_ADD_SPECIAL;
    if (skip_special)
        o.decode_flags |= RV_TOK_SKIP_SPECIAL;

    double t0 = rv_now();
    rv_tokenizer *t = rv_tokenizer_load(o.tokenizer_path);
    if (!t)
        rv_die_lib();
    if (!quiet && getenv("RV_TOKENIZE_TIMING"))
        fprintf(stderr, "rv-tokenize: tokenizer loaded in %.3f s\n", rv_now() - t0);

    const char *in_path = optind < argc ? argv[optind] : NULL;
    input in;
    open_input(&in, in_path, &o);
    rv_output out;
    rv_output_open(&out, output, o.mode == MODE_CHUNK, force);
    rv_stream_writer *sw = NULL;
    if (o.mode == MODE_CHUNK) {
        rv_buf meta = {0};
        metadata(&meta, &o, t);
        if (rv_buf_putc(&meta, 0) < 0)
            rv_die_lib();
        sw = rv_stream_writer_open(out.f, out.path, "chunk", RV_CHUNK_VERSION, (const char *)meta.data, level);
        if (!sw)
            rv_die_lib();
        rv_buf_free(&meta);
    }

    worker *ws = calloc((size_t)o.threads, sizeof *ws);
    if (!ws)
        rv_die("out of memory");
    for (int i = 0; i < o.threads; i++) {
        ws[i].tok = rv_tok_state_new(t);
        ws[i].json = rv_json_parser_new();
        if (!ws[i].tok || !ws[i].json)
            rv_die_lib();
    }
    rv_progress prog;
    rv_progress_start(&prog, "rv-tokenize", "docs", 0, quiet);
    batch b = {0};
    uint64_t docs = 0, tokens = 0, records = 0;
    size_t n;
    while ((n = read_batch(&in, &o, &b)) > 0) {
#pragma omp parallel for schedule(dynamic, 4) num_threads(o.threads)
        for (size_t i = 0; i < n; i++)
            process_item(t, &o, &ws[omp_get_thread_num()], &b, &b.items[i], in.name);
        for (size_t i = 0; i < n; i++) {
            item *it = &b.items[i];
            if (it->err)
                rv_die("%s", it->err);
            if (sw) {
                const unsigned char *p = it->out.data;
                for (uint32_t r = 0; r < it->n_records; r++) {
                    uint32_t len = rv_load_u32(p);
                    if (rv_stream_write(sw, p + 4, len) < 0)
                        rv_die_lib();
                    p += 4 + len;
                }
                records += it->n_records;
            } else if (it->out.len && fwrite(it->out.data, 1, it->out.len, out.f) != it->out.len) {
                rv_die("%s: write error", output ? output : "<stdout>");
            }
            tokens += it->n_tokens;
        }
        docs += n;
        rv_progress_update(&prog, docs);
    }
    if (sw) {
        if (rv_stream_writer_finish(sw) < 0)
            rv_die_lib();
        rv_stream_writer_free(sw);
    }
    rv_output_commit(&out);
    rv_progress_finish(&prog);
    if (!quiet && o.mode == MODE_CHUNK)
        fprintf(stderr, "rv-tokenize: %llu documents, %llu chunks, %llu tokens\n", (unsigned long long)docs,
                (unsigned long long)records, (unsigned long long)tokens);
    close_input(&in);
    for (int i = 0; i < o.threads; i++) {
        rv_tok_state_free(ws[i].tok);
        rv_json_parser_free(ws[i].json);
        rv_ids_free(&ws[i].ids);
        rv_buf_free(&ws[i].text);
        rv_buf_free(&ws[i].scratch);
        rv_buf_free(&ws[i].rec);
        rv_chunk_list_free(&ws[i].chunks);
    }
    free(ws);
    for (size_t i = 0; i < b.cap; i++) {
        rv_buf_free(&b.items[i].out);
        free(b.items[i].err);
    }
    free(b.items);
    rv_buf_free(&b.arena);
    rv_tokenizer_free(t);
    return RV_EXIT_OK;
}
