/* search_bm25.c — rv-search --bm25: option parsing and wiring of the BM25
 * baseline (see search_bm25.h). Reading corpora and queries, the index file
 * cache (--index) and the output formats live here; the engine is lib/bm25.c. */
#include "search_bm25.h"
#include "bm25.h"
#include "buf.h"
#include "cli.h"
#include "json.h"
#include "lines.h"
#include "progress.h"
#include "records.h"
#include "stream.h"
#include "atomic_file.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_K 1000
#define DEFAULT_TAG "rv-bm25"
#define DOC_BATCH 8192
#define QUERY_BATCH 4096

_Noreturn static void usage(void)
{
    printf("Usage: rv-search --bm25 --corpus DOCS [OPTION]... [QUERIES]\n"
           "BM25 search, the lexical baseline: index DOCS, rank it for every query and print\n"
           "the top k as a TREC run (qid Q0 docid rank score tag). Scores and rankings match\n"
           "bm25s with the same variant, k1, b, stopwords and stemmer.\n"
           "\n"
           "DOCS is a doc stream, a chunk stream (chunk ids are DOCID#CHUNK) or a BEIR\n"
           "corpus.jsonl ({\"_id\",\"title\",\"text\"}; a document is title + \" \" + text).\n"
           "QUERIES is a doc stream or a BEIR queries.jsonl ({\"_id\",\"text\"}); with no\n"
           "QUERIES, or when it is -, read standard input.\n"
           "\n"
           "Search:\n"
           "  -c, --corpus DOCS       the documents to search (required)\n"
           "  -k, --k N               hits per query (default %d); only documents containing\n"
           "                          a query term are returned\n"
           "      --index FILE        reuse the index in FILE when it exists (it must have been\n"
           "                          built from the same DOCS and options), else build it and\n"
           "                          save it there (formats/bm25-index.md)\n"
           "  -t, --threads N         worker threads (default: all processors, or $OMP_NUM_THREADS)\n"
           "BM25:\n"
           "      --variant V         lucene (default), robertson, atire, bm25l or bm25+\n"
           "      --k1 X              term-frequency saturation (default 1.5)\n"
           "      --b X               length normalisation in [0, 1] (default 0.75)\n"
           "      --delta X           bm25l / bm25+ delta (default 0.5)\n"
           "      --stopwords S       en (default, bm25s's English list), none, or a FILE with\n"
           "                          one lower-case word per line\n"
           "      --stem S            english (default, Snowball) or none\n"
           "Output:\n"
           "      --tag NAME          run tag, the last TREC column (default %s)\n"
           "  -s, --stream            write a run stream instead of TREC text\n"
           "  -o, --output FILE       write FILE (atomically, via FILE.part) instead of standard output\n"
           "  -f, --force             write a stream even when standard output is a terminal\n"
           "  -q, --quiet             no parameter or timing lines on standard error\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n"
           "\n"
           "Ties rank by corpus order. Exit status: 0 success, 1 bad data or I/O error, 2 usage error.\n"
           "Example:\n"
           "  rv-search --bm25 --corpus corpus.jsonl -k 100 queries.jsonl > run.trec\n",
           DEFAULT_K, DEFAULT_TAG);
    exit(RV_EXIT_OK);
}

typedef struct {
    const char *corpus, *queries, *index, *tag, *output, *stopwords, *stem;
    rv_bm25_params params;
    uint32_t k;
    int threads, stream, force, quiet;
} bm25_opts;

enum { OPT_BM25 = 256, OPT_INDEX, OPT_VARIANT, OPT_K1, OPT_B, OPT_DELTA, OPT_STOPWORDS, OPT_STEM, OPT_TAG };

static void parse_args(int argc, char **argv, bm25_opts *o)
{
    static const struct option opts[] = {
        {"bm25", no_argument, 0, OPT_BM25},
        {"corpus", required_argument, 0, 'c'},
        {"k", required_argument, 0, 'k'},
        {"index", required_argument, 0, OPT_INDEX},
        {"threads", required_argument, 0, 't'},
        {"variant", required_argument, 0, OPT_VARIANT},
        {"k1", required_argument, 0, OPT_K1},
        {"b", required_argument, 0, OPT_B},
        {"delta", required_argument, 0, OPT_DELTA},
        {"stopwords", required_argument, 0, OPT_STOPWORDS},
        {"stem", required_argument, 0, OPT_STEM},
        {"tag", required_argument, 0, OPT_TAG},
        {"stream", no_argument, 0, 's'},
        {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    rv_bm25_params_default(&o->params);
    o->k = DEFAULT_K;
    o->tag = DEFAULT_TAG;
    o->stopwords = "en";
    o->stem = "english";
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:k:t:so:fqhV", opts, NULL)) != -1) {
        switch (c) {
        case OPT_BM25: break;
        case 'c': o->corpus = optarg; break;
        case 'k': o->k = (uint32_t)rv_parse_count("--k", optarg, UINT32_MAX / 2); break;
        case OPT_INDEX: o->index = optarg; break;
        case 't': o->threads = (int)rv_parse_count("--threads", optarg, 4096); break;
        case OPT_VARIANT:
            if (rv_bm25_variant_parse(optarg, &o->params.variant) < 0)
                rv_die_usage("--%s", rv_error_get());
            break;
        case OPT_K1: o->params.k1 = rv_parse_double("--k1", optarg); break;
        case OPT_B: o->params.b = rv_parse_double("--b", optarg); break;
        case OPT_DELTA: o->params.delta = rv_parse_double("--delta", optarg); break;
        case OPT_STOPWORDS: o->stopwords = optarg; break;
        case OPT_STEM:
            if (strcmp(optarg, "english") != 0 && strcmp(optarg, "none") != 0)
                rv_die_usage("--stem: expected english or none, found \"%s\"", optarg);
            o->stem = optarg;
            break;
        case OPT_TAG:
            if (!*optarg || strpbrk(optarg, " \t\n"))
                rv_die_usage("--tag: expected a non-empty name without blanks, found \"%s\"", optarg);
            o->tag = optarg;
            break;
        case 's': o->stream = 1; break;
        case 'o': o->output = optarg; break;
        case 'f': o->force = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage();
        case 'V': rv_print_version();
        default: rv_die_bad_option(c, argv);
        }
    }
    if (!o->corpus)
        rv_die_usage("--corpus DOCS is required");
    if (rv_bm25_params_check(&o->params) < 0)
        rv_die_usage("--%s", rv_error_get());
    if (argc - optind > 1)
        rv_die_usage("at most one QUERIES file, found %d", argc - optind);
    o->queries = argc - optind == 1 ? argv[optind] : "-";
    if (strcmp(o->corpus, "-") == 0 && strcmp(o->queries, "-") == 0)
        rv_die_usage("--corpus and the queries cannot both be standard input");
}

/* ------------------------------------------------------------ text input */

/* Records with an id and a text, from a doc/chunk stream or JSON Lines. */
typedef struct {
    const char *name;       /* for messages */
    FILE *f;
    rv_stream_reader *sr;
    int is_chunk;
    rv_lines lines;
    rv_json_parser *jp;
    int queries;            /* JSONL queries: "text" only; docs: title + " " + text */
    rv_buf id, text;        /* the current record */
} text_source;

static void source_open(text_source *s, const char *path, int queries)
{
    memset(s, 0, sizeof *s);
    s->queries = queries;
    s->name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    s->f = rv_open_input(path, 0);
    int c = getc(s->f);
    if (c == EOF) {
        if (ferror(s->f))
            rv_die("%s: read error: %s", s->name, strerror(errno));
        rv_die("%s: empty input: expected a doc%s stream or JSON Lines", s->name, queries ? "" : "/chunk");
    }
    if (ungetc(c, s->f) == EOF)
        rv_die("%s: read error", s->name);
    if (c == 0x28) { /* first byte of a zstd frame: a revela stream */
        s->sr = rv_stream_reader_open(s->f, s->name);
        if (!s->sr)
            rv_die_lib();
        const char *kind = rv_stream_reader_kind(s->sr);
        if (!queries && strcmp(kind, "chunk") == 0) {
            if (rv_stream_reader_expect(s->sr, "chunk", RV_CHUNK_VERSION) < 0)
                rv_die_lib();
            s->is_chunk = 1;
        } else if (rv_stream_reader_expect(s->sr, "doc", RV_DOC_VERSION) < 0) {
            rv_die("%s: expected a doc%s stream, found a %s stream", s->name, queries ? "" : " or chunk", kind);
        }
    } else {
        rv_lines_init(&s->lines, s->f);
        s->jp = rv_json_parser_new();
        if (!s->jp)
            rv_die_lib();
    }
}

static void set_str(rv_buf *b, const char *p, size_t n)
{
    b->len = 0;
    if (rv_buf_append(b, p, n) < 0 || rv_buf_putc(b, 0) < 0)
        rv_die_lib();
    b->len--;
}

static const rv_json *json_string_field(const text_source *s, size_t lineno, const rv_json *o, const char *key,
                                        int required)
{
    const rv_json *v = rv_json_get(o, key);
    if (!v) {
        if (required)
            rv_die("%s:%zu: %s: expected a string field, found none", s->name, lineno, key);
        return NULL;
    }
    if (v->type != RV_JSON_STRING)
        rv_die("%s:%zu: %s: expected a string, found %s", s->name, lineno, key, rv_json_type_name(v->type));
    return v;
}

/* Reads the next record into s->id / s->text: 1, or 0 at the end. */
static int source_next(text_source *s)
{
    if (s->sr) {
        const unsigned char *rec;
        size_t len;
        int rc = rv_stream_read(s->sr, &rec, &len);
        if (rc < 0)
            rv_die_lib();
        if (rc == 0)
            return 0;
        unsigned long long recno = (unsigned long long)rv_stream_reader_count(s->sr) - 1;
        if (s->is_chunk) {
            rv_chunk ch;
            if (rv_chunk_decode(rec, len, &ch) < 0)
                rv_die("%s: record %llu: %s", s->name, recno, rv_error_get());
            s->id.len = 0;
            if (rv_buf_append(&s->id, ch.doc_id.p, ch.doc_id.len) < 0 ||
                rv_buf_printf(&s->id, "#%u", ch.index) < 0)
                rv_die_lib();
            set_str(&s->text, ch.text.p, ch.text.len);
        } else {
            rv_doc d;
            if (rv_doc_decode(rec, len, &d) < 0)
                rv_die("%s: record %llu: %s", s->name, recno, rv_error_get());
            set_str(&s->id, d.id.p, d.id.len);
            s->text.len = 0;
            if (!s->queries || d.title.len) {
                if (rv_buf_append(&s->text, d.title.p, d.title.len) < 0 || rv_buf_putc(&s->text, ' ') < 0)
                    rv_die_lib();
            }
            if (rv_buf_append(&s->text, d.text.p, d.text.len) < 0)
                rv_die_lib();
        }
        return 1;
    }
    char *line;
    size_t len;
    int rc;
    while ((rc = rv_lines_next(&s->lines, &line, &len)) == 1) {
        size_t j = 0;
        while (j < len && (line[j] == ' ' || line[j] == '\t'))
            j++;
        if (j == len)
            continue;
        size_t ln = s->lines.lineno;
        rv_json *v = rv_json_parse(s->jp, line, len);
        if (!v)
            rv_die("%s:%zu: %s", s->name, ln, rv_error_get());
        if (v->type != RV_JSON_OBJECT)
            rv_die("%s:%zu: expected a JSON object, found %s", s->name, ln, rv_json_type_name(v->type));
        const rv_json *id = rv_json_get(v, "_id") ? json_string_field(s, ln, v, "_id", 1)
                                                   : json_string_field(s, ln, v, "id", 0);
        if (!id)
            rv_die("%s:%zu: _id: expected a string field \"_id\" or \"id\", found neither", s->name, ln);
        const rv_json *text = json_string_field(s, ln, v, "text", 1);
        const rv_json *title = s->queries ? NULL : json_string_field(s, ln, v, "title", 0);
        set_str(&s->id, id->u.string, id->len);
        s->text.len = 0;
        if (!s->queries) {
            if ((title && rv_buf_append(&s->text, title->u.string, title->len) < 0) || rv_buf_putc(&s->text, ' ') < 0)
                rv_die_lib();
        }
        if (rv_buf_append(&s->text, text->u.string, text->len) < 0)
            rv_die_lib();
        return 1;
    }
    if (rc < 0)
        rv_die("%s:%s", s->name, rv_error_get());
    return 0;
}

static void source_close(text_source *s)
{
    if (s->sr)
        rv_stream_reader_close(s->sr);
    else {
        rv_lines_free(&s->lines);
        rv_json_parser_free(s->jp);
    }
    rv_close_input(s->f);
    rv_buf_free(&s->id);
    rv_buf_free(&s->text);
}

/* Strings kept for the whole run, addressed by offset. */
typedef struct {
    rv_buf bytes;
    uint64_t *off;          /* n + 1 */
    size_t n, cap;
} string_list;

static void strings_add(string_list *l, const char *p, size_t n)
{
    if (l->n + 1 >= l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        uint64_t *o = realloc(l->off, (cap + 1) * sizeof *o);
        if (!o)
            rv_die("out of memory");
        l->off = o;
        l->cap = cap;
        if (l->n == 0)
            l->off[0] = 0;
    }
    if (rv_buf_append(&l->bytes, p, n) < 0)
        rv_die_lib();
    l->off[++l->n] = l->bytes.len;
}

static const char *strings_get(const string_list *l, size_t i, size_t *len)
{
    *len = (size_t)(l->off[i + 1] - l->off[i]);
    return (const char *)l->bytes.data + l->off[i];
}

static void strings_free(string_list *l)
{
    rv_buf_free(&l->bytes);
    free(l->off);
}

/* --------------------------------------------------------------- corpus */

/* Reads the corpus: ids always, texts into the builder when `b` is set.
 * Returns the corpus fingerprint. */
static uint64_t read_corpus(const bm25_opts *o, rv_bm25_builder *b, string_list *ids)
{
    text_source s;
    source_open(&s, o->corpus, 0);
    rv_bm25_fingerprint *fp = rv_bm25_fingerprint_new();
    string_list batch = {0};
    if (!fp)
        rv_die_lib();
    const char **texts = malloc(DOC_BATCH * sizeof *texts);
    size_t *lens = malloc(DOC_BATCH * sizeof *lens);
    if (!texts || !lens)
        rv_die("out of memory");
    for (;;) {
        int more = source_next(&s);
        if (more) {
            if (ids->n >= UINT32_MAX - 1)
                rv_die("%s: more than %u documents", s.name, UINT32_MAX - 1);
            strings_add(ids, (const char *)s.id.data, s.id.len);
            rv_bm25_fingerprint_add(fp, (const char *)s.text.data, s.text.len);
            if (b)
                strings_add(&batch, (const char *)s.text.data, s.text.len);
        }
        if (b && batch.n && (!more || batch.n == DOC_BATCH)) {
            for (size_t i = 0; i < batch.n; i++)
                texts[i] = strings_get(&batch, i, &lens[i]);
            if (rv_bm25_builder_add(b, batch.n, texts, lens) < 0)
                rv_die("%s: %s", s.name, rv_error_get());
            batch.n = 0;
            batch.bytes.len = 0;
        }
        if (!more)
            break;
    }
    uint64_t h = rv_bm25_fingerprint_digest(fp);
    if (ids->n == 0)
        rv_die("%s: the corpus has no documents", s.name);
    rv_bm25_fingerprint_free(fp);
    strings_free(&batch);
    free(texts);
    free(lens);
    source_close(&s);
    return h;
}

static int same_params(const rv_bm25_params *a, const rv_bm25_params *b)
{
    return a->variant == b->variant && a->k1 == b->k1 && a->b == b->b &&
           ((a->variant != RV_BM25_BM25L && a->variant != RV_BM25_BM25PLUS) || a->delta == b->delta);
}

/* Loads --index FILE, checking that it fits the options and the corpus. */
static rv_bm25_index *load_index(const bm25_opts *o, FILE *f, const rv_analyzer *want, uint64_t hash, size_t n_docs)
{
    rv_bm25_index *ix = rv_bm25_index_load(f, o->index);
    if (!ix)
        rv_die_lib();
    const rv_bm25_params *p = rv_bm25_index_params(ix);
    const rv_analyzer *an = rv_bm25_index_analyzer(ix);
    if (!same_params(p, &o->params))
        rv_die("%s: built with --variant %s --k1 %.17g --b %.17g --delta %.17g, not the options given; "
               "remove it or give the same options", o->index, rv_bm25_variant_name(p->variant), p->k1, p->b,
               p->delta);
    if (rv_analyzer_stemmer(an) != rv_analyzer_stemmer(want) ||
        rv_analyzer_stopwords_hash(an) != rv_analyzer_stopwords_hash(want))
        rv_die("%s: built with --stopwords %s --stem %s, not the options given; remove it or give the same "
               "options", o->index, rv_analyzer_stopwords_name(an), rv_analyzer_stemmer_name(an));
    if (rv_bm25_index_docs(ix) != n_docs || rv_bm25_index_corpus_hash(ix) != hash)
        rv_die("%s: built from a different corpus (%zu documents) than %s (%zu documents); remove it to rebuild",
               o->index, rv_bm25_index_docs(ix), o->corpus, n_docs);
    return ix;
}

static rv_bm25_index *get_index(const bm25_opts *o, string_list *ids)
{
    double t0 = rv_now();
    FILE *f = o->index ? fopen(o->index, "rb") : NULL;
    if (!f && o->index && errno != ENOENT)
        rv_die("%s: cannot open: %s", o->index, strerror(errno));
    rv_bm25_index *ix;
    if (f) {
        rv_analyzer *want = rv_analyzer_new(o->stopwords, o->stem);
        if (!want)
            rv_die("--stopwords: %s", rv_error_get());
        uint64_t h = read_corpus(o, NULL, ids);
        ix = load_index(o, f, want, h, ids->n);
        rv_analyzer_free(want);
        fclose(f);
        if (!o->quiet)
            fprintf(stderr, "%s: loaded the index %s (%zu documents, %zu terms) in %.1fs\n", rv_cli_tool(),
                    o->index, rv_bm25_index_docs(ix), rv_bm25_index_terms(ix), rv_now() - t0);
        return ix;
    }
    rv_bm25_builder *b = rv_bm25_builder_new(o->stopwords, o->stem, &o->params, 0, o->threads);
    if (!b)
        rv_die("%s", rv_error_get());
    read_corpus(o, b, ids);
    ix = rv_bm25_builder_finish(b);
    if (!ix)
        rv_die("%s: %s", o->corpus, rv_error_get());
    if (!o->quiet)
        fprintf(stderr, "%s: indexed %zu documents (%zu terms, %llu postings) in %.1fs\n", rv_cli_tool(),
                rv_bm25_index_docs(ix), rv_bm25_index_terms(ix),
                (unsigned long long)rv_bm25_index_postings(ix), rv_now() - t0);
    if (o->index) {
        rv_atomic_file af;
        if (rv_atomic_open(&af, o->index) < 0)
            rv_die_lib();
        if (rv_bm25_index_save(ix, af.f, o->index) < 0) {
            rv_atomic_abort(&af);
            rv_die_lib();
        }
        if (rv_atomic_commit(&af) < 0)
            rv_die_lib();
    }
    return ix;
}

/* --------------------------------------------------------------- output */

static void put_params_json(rv_buf *m, const rv_bm25_index *ix)
{
    const rv_bm25_params *p = rv_bm25_index_params(ix);
    const rv_analyzer *an = rv_bm25_index_analyzer(ix);
    const char *sw = rv_analyzer_stopwords_name(an);
    if (rv_buf_printf(m, "\"bm25\":{\"variant\":\"%s\",\"k1\":%.17g,\"b\":%.17g,\"delta\":%.17g,\"stopwords\":",
                      rv_bm25_variant_name(p->variant), p->k1, p->b, p->delta) < 0 ||
        rv_json_put_string(m, sw, strlen(sw)) < 0 ||
        rv_buf_printf(m, ",\"stemmer\":\"%s\",\"docs\":%zu,\"terms\":%zu,\"avgdl\":%.17g}",
                      rv_analyzer_stemmer_name(an), rv_bm25_index_docs(ix), rv_bm25_index_terms(ix),
                      rv_bm25_index_avgdl(ix)) < 0)
        rv_die_lib();
}

static int has_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
            return 1;
    return 0;
}

int rv_search_bm25_main(int argc, char **argv)
{
    bm25_opts o;
    parse_args(argc, argv, &o);
    rv_output out;
    rv_output_open(&out, o.output, o.stream, o.force);
    string_list ids = {0}, qids = {0}, qtexts = {0};
    rv_bm25_index *ix = get_index(&o, &ids);
    if (!o.quiet) {
        const rv_bm25_params *p = rv_bm25_index_params(ix);
        char delta[64] = "";
        if (p->variant == RV_BM25_BM25L || p->variant == RV_BM25_BM25PLUS)
            snprintf(delta, sizeof delta, ", delta %g", p->delta);
        fprintf(stderr, "%s: bm25 variant %s, k1 %g, b %g%s, stopwords %s, stemmer %s, k %u\n", rv_cli_tool(),
                rv_bm25_variant_name(p->variant), p->k1, p->b, delta,
                rv_analyzer_stopwords_name(rv_bm25_index_analyzer(ix)),
                rv_analyzer_stemmer_name(rv_bm25_index_analyzer(ix)), o.k);
    }
    text_source qs;
    source_open(&qs, o.queries, 1);
    while (source_next(&qs)) {
        strings_add(&qids, (const char *)qs.id.data, qs.id.len);
        strings_add(&qtexts, (const char *)qs.text.data, qs.text.len);
    }
    source_close(&qs);

    rv_stream_writer *w = NULL;
    rv_buf rec = {0};
    if (o.stream) {
        rv_buf meta = {0};
        if (rv_buf_printf(&meta, "{\"producer\":\"%s %s\",\"mode\":\"bm25\",\"k\":%u,\"tag\":", rv_cli_tool(),
                          RV_VERSION, o.k) < 0 ||
            rv_json_put_string(&meta, o.tag, strlen(o.tag)) < 0 || rv_buf_putc(&meta, ',') < 0)
            rv_die_lib();
        put_params_json(&meta, ix);
        if (rv_buf_append(&meta, "}", 2) < 0)
            rv_die_lib();
        w = rv_stream_writer_open(out.f, o.output, "run", RV_RUN_VERSION, (const char *)meta.data, 0);
        if (!w)
            rv_die_lib();
        rv_buf_free(&meta);
    }
    uint32_t k = o.k;
    size_t nb = qids.n < QUERY_BATCH ? qids.n : QUERY_BATCH;
    size_t n_hits_total;
    if (rv_size_mul(nb ? nb : 1, k, &n_hits_total, "hits") < 0)
        rv_die_lib();
    rv_bm25_hit *hits = malloc(n_hits_total * sizeof *hits);
    uint32_t *n_hits = malloc((nb ? nb : 1) * sizeof *n_hits);
    const char **texts = malloc((nb ? nb : 1) * sizeof *texts);
    size_t *lens = malloc((nb ? nb : 1) * sizeof *lens);
    if (!hits || !n_hits || !texts || !lens)
        rv_die("out of memory: %zu hits of %u per query", n_hits_total, k);
    rv_progress pr;
    rv_progress_start(&pr, rv_cli_tool(), "queries", qids.n, o.quiet);
    for (size_t start = 0; start < qids.n; start += nb) {
        size_t cnt = qids.n - start < nb ? qids.n - start : nb;
        for (size_t i = 0; i < cnt; i++)
            texts[i] = strings_get(&qtexts, start + i, &lens[i]);
        if (rv_bm25_search(ix, cnt, texts, lens, k, o.threads, hits, n_hits) < 0)
            rv_die("%s", rv_error_get());
        for (size_t i = 0; i < cnt; i++) {
            size_t ql;
            const char *qid = strings_get(&qids, start + i, &ql);
            const rv_bm25_hit *h = hits + i * (size_t)k;
            if (w) {
                if (rv_run_begin(&rec, qid, ql, n_hits[i]) < 0)
                    rv_die_lib();
                for (uint32_t j = 0; j < n_hits[i]; j++) {
                    size_t dl;
                    const char *did = strings_get(&ids, h[j].doc, &dl);
                    if (rv_run_add(&rec, did, dl, (double)h[j].score) < 0)
                        rv_die_lib();
                }
                if (rv_stream_write(w, rec.data, rec.len) < 0)
                    rv_die_lib();
                continue;
            }
            if (n_hits[i] && (ql == 0 || has_blank(qid, ql)))
                rv_die("%s: query id \"%.*s\" is empty or has blanks, which a TREC run cannot hold; use --stream",
                       qs.name, (int)ql, qid);
            for (uint32_t j = 0; j < n_hits[i]; j++) {
                size_t dl;
                const char *did = strings_get(&ids, h[j].doc, &dl);
                if (dl == 0 || has_blank(did, dl))
                    rv_die("%s: document id \"%.*s\" is empty or has blanks, which a TREC run cannot hold; "
                           "use --stream", o.corpus, (int)dl, did);
                if (fprintf(out.f, "%.*s Q0 %.*s %u %.9g %s\n", (int)ql, qid, (int)dl, did, j + 1,
                            (double)h[j].score, o.tag) < 0)
                    rv_die("write error: %s", strerror(errno));
            }
        }
        rv_progress_update(&pr, start + cnt);
    }
    if (w) {
        if (rv_stream_writer_finish(w) < 0)
            rv_die_lib();
        rv_stream_writer_free(w);
    }
    rv_output_commit(&out);
    rv_progress_finish(&pr);
    free(hits);
    free(n_hits);
    free(texts);
    free(lens);
    rv_buf_free(&rec);
    strings_free(&ids);
    strings_free(&qids);
    strings_free(&qtexts);
    rv_bm25_index_free(ix);
    return 0;
}
