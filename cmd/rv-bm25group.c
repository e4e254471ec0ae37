/* rv-bm25group — group chunks into training groups: each seed chunk with its
 * BM25 neighbours (default), or the paper's document interleaving; imports
 * and exports the original Revela JSONL batch file. Wiring only: the engine
 * is lib/bm25.c, the grouping rules lib/bm25_group.c. */
#include "cli.h"
#include "analyzer.h"
#include "atomic_file.h"
#include "bm25.h"
#include "bm25_group.h"
#include "bm25_strtab.h"
#include "buf.h"
#include "json.h"
#include "lines.h"
#include "progress.h"
#include "records.h"
#include "stream.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_GROUP_SIZE 16
#define DEFAULT_SEED 42
#define DEFAULT_DOCS_PER_GROUP 2

_Noreturn static void usage(void)
{
    printf("Usage: rv-bm25group [OPTION]... [CHUNKS]\n"
           "Group text chunks into training groups for rv-train. CHUNKS is a chunk stream;\n"
           "with no CHUNKS, or when it is -, read standard input. Writes a group stream.\n"
           "\n"
           "Grouping:\n"
           "  -g, --group-size N      chunks per group (default %d)\n"
           "  -m, --mode M            bm25 (default): each seed chunk with its best BM25\n"
           "                          neighbours (its text is the query); interleave: the\n"
           "                          paper's construction (chunks of --docs-per-group\n"
           "                          documents interleaved, cut into groups)\n"
           "      --seeds all|N       bm25: every chunk is a seed (default), or the first N of\n"
           "                          the seed order\n"
           "      --seed S            seed of the seed order and of --short fill (default %d)\n"
           "      --other-docs        bm25: neighbours only from other documents than the seed's\n"
           "      --max-reuse N       bm25: use a chunk in at most N groups (default 0: no limit)\n"
           "      --short drop|fill   bm25: a seed with fewer matching neighbours than needed is\n"
           "                          dropped (default), or its group is completed with random\n"
           "                          chunks the rules allow\n"
           "      --docs-per-group N  interleave: documents interleaved together (default %d)\n"
           "      --src TAG           source tag of every group (default empty)\n"
           "Near-duplicate chunks (same words after lower-casing) never share a group.\n"
           "BM25 (as in rv-search --bm25; every value is recorded in the output metadata):\n"
           "      --variant V         lucene (default), robertson, atire, bm25l or bm25+\n"
           "      --k1 X              default 1.5\n"
           "      --b X               default 0.75\n"
           "      --delta X           bm25l / bm25+ delta (default 0.5)\n"
           "      --stopwords S       en (default), none, or a FILE with one word per line\n"
           "      --stem S            english (default) or none\n"
           "      --index FILE        reuse the index in FILE when it exists (built from the same\n"
           "                          CHUNKS and options), else build it and save it there\n"
           "  -t, --threads N         worker threads (default: all processors, or $OMP_NUM_THREADS)\n"
           "Input and output:\n"
           "      --jsonl             write the original Revela batch file instead of a stream:\n"
           "                          one JSON list of chunk texts per group, or\n"
           "                          {\"src\": TAG, \"text\": [...]} when the group has a source\n"
           "      --from-jsonl        read such a batch file instead of chunks (each line becomes\n"
           "                          one group; doc ids empty, chunk = position, no token ids)\n"
           "  -o, --output FILE       write FILE (atomically, via FILE.part) instead of standard output\n"
           "  -f, --force             write a stream even when standard output is a terminal\n"
           "  -q, --quiet             no parameter, progress or summary lines on standard error\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n"
           "\n"
           "Exit status: 0 success, 1 bad data or I/O error, 2 usage error.\n"
           "Example:\n"
           "  rv-bm25group --group-size 16 --max-reuse 1 < chunks.rvs > groups.rvs\n",
           DEFAULT_GROUP_SIZE, DEFAULT_SEED, DEFAULT_DOCS_PER_GROUP);
    exit(RV_EXIT_OK);
}

typedef enum { MODE_BM25, MODE_INTERLEAVE } group_mode;

typedef struct {
    const char *input, *output, *index, *stopwords, *stem, *src;
    group_mode mode;
    rv_bm25_params params;
    uint32_t group_size, docs_per_group, max_reuse;
    uint64_t seed;
    size_t n_seeds;
    int other_docs, fill_short, threads, jsonl, from_jsonl, force, quiet;
} opts;

enum {
    OPT_SEEDS = 256, OPT_SEED, OPT_OTHER_DOCS, OPT_MAX_REUSE, OPT_SHORT, OPT_DOCS_PER_GROUP, OPT_SRC, OPT_VARIANT,
    OPT_K1, OPT_B, OPT_DELTA, OPT_STOPWORDS, OPT_STEM, OPT_INDEX, OPT_JSONL, OPT_FROM_JSONL
};

static void parse_args(int argc, char **argv, opts *o)
{
    static const struct option longopts[] = {
        {"group-size", required_argument, 0, 'g'}, {"mode", required_argument, 0, 'm'},
        {"seeds", required_argument, 0, OPT_SEEDS}, {"seed", required_argument, 0, OPT_SEED},
        {"other-docs", no_argument, 0, OPT_OTHER_DOCS}, {"max-reuse", required_argument, 0, OPT_MAX_REUSE},
        {"short", required_argument, 0, OPT_SHORT}, {"docs-per-group", required_argument, 0, OPT_DOCS_PER_GROUP},
        {"src", required_argument, 0, OPT_SRC}, {"variant", required_argument, 0, OPT_VARIANT},
        {"k1", required_argument, 0, OPT_K1}, {"b", required_argument, 0, OPT_B},
        {"delta", required_argument, 0, OPT_DELTA}, {"stopwords", required_argument, 0, OPT_STOPWORDS},
        {"stem", required_argument, 0, OPT_STEM}, {"index", required_argument, 0, OPT_INDEX},
        {"threads", required_argument, 0, 't'}, {"jsonl", no_argument, 0, OPT_JSONL},
        {"from-jsonl", no_argument, 0, OPT_FROM_JSONL}, {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->mode = MODE_BM25;
    rv_bm25_params_default(&o->params);
    o->group_size = DEFAULT_GROUP_SIZE;
    o->docs_per_group = DEFAULT_DOCS_PER_GROUP;
    o->seed = DEFAULT_SEED;
    o->stopwords = "en";
    o->stem = "english";
    o->src = "";
    int c, bm25_only = 0, interleave_only = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":g:m:t:o:fqhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'g':
            o->group_size = (uint32_t)rv_parse_uint("--group-size", optarg, 65536);
            if (o->group_size < 2)
                rv_die_usage("--group-size: expected at least 2, found %u", o->group_size);
            break;
        case 'm':
            if (strcmp(optarg, "bm25") == 0)
                o->mode = MODE_BM25;
            else if (strcmp(optarg, "interleave") == 0)
                o->mode = MODE_INTERLEAVE;
            else
                rv_die_usage("--mode: expected bm25 or interleave, found \"%s\"", optarg);
            break;
        case OPT_SEEDS:
            bm25_only = 1;
            if (strcmp(optarg, "all") == 0)
                o->n_seeds = 0;
            else if ((o->n_seeds = (size_t)rv_parse_uint("--seeds", optarg, UINT32_MAX)) == 0)
                rv_die_usage("--seeds: expected all or a count of at least 1, found 0");
            break;
        case OPT_SEED: o->seed = rv_parse_uint("--seed", optarg, UINT64_MAX); break;
        case OPT_OTHER_DOCS: o->other_docs = 1; bm25_only = 1; break;
        case OPT_MAX_REUSE:
            o->max_reuse = (uint32_t)rv_parse_uint("--max-reuse", optarg, UINT32_MAX);
            bm25_only = 1;
            break;
        case OPT_SHORT:
            if (strcmp(optarg, "drop") == 0)
                o->fill_short = 0;
            else if (strcmp(optarg, "fill") == 0)
                o->fill_short = 1;
            else
                rv_die_usage("--short: expected drop or fill, found \"%s\"", optarg);
            bm25_only = 1;
            break;
        case OPT_DOCS_PER_GROUP:
            o->docs_per_group = (uint32_t)rv_parse_count("--docs-per-group", optarg, UINT32_MAX);
            interleave_only = 1;
            break;
        case OPT_SRC: o->src = optarg; break;
        case OPT_VARIANT:
            if (rv_bm25_variant_parse(optarg, &o->params.variant) < 0)
                rv_die_usage("--%s", rv_error_get());
            bm25_only = 1;
            break;
        case OPT_K1: o->params.k1 = rv_parse_double("--k1", optarg); bm25_only = 1; break;
        case OPT_B: o->params.b = rv_parse_double("--b", optarg); bm25_only = 1; break;
        case OPT_DELTA: o->params.delta = rv_parse_double("--delta", optarg); bm25_only = 1; break;
        case OPT_STOPWORDS: o->stopwords = optarg; bm25_only = 1; break;
        case OPT_STEM:
            if (strcmp(optarg, "english") != 0 && strcmp(optarg, "none") != 0)
                rv_die_usage("--stem: expected english or none, found \"%s\"", optarg);
            o->stem = optarg;
            bm25_only = 1;
            break;
        case OPT_INDEX: o->index = optarg; bm25_only = 1; break;
        case 't': o->threads = (int)rv_parse_count("--threads", optarg, 4096); break;
        case OPT_JSONL: o->jsonl = 1; break;
        case OPT_FROM_JSONL: o->from_jsonl = 1; break;
        case 'o': o->output = optarg; break;
        case 'f': o->force = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage();
        case 'V': rv_print_version();
        default: rv_die_bad_option(c, argv);
        }
    }
    if (rv_bm25_params_check(&o->params) < 0)
        rv_die_usage("--%s", rv_error_get());
    if (o->mode == MODE_INTERLEAVE && bm25_only)
        rv_die_usage("--seeds, --other-docs, --max-reuse, --short, --index and the BM25 options apply to "
                     "--mode bm25 only");
    if (o->mode == MODE_BM25 && interleave_only)
        rv_die_usage("--docs-per-group applies to --mode interleave only");
    if (o->from_jsonl && (bm25_only || interleave_only))
        rv_die_usage("--from-jsonl converts a batch file; grouping options do not apply");
    if (argc - optind > 1)
        rv_die_usage("at most one input file, found %d", argc - optind);
    o->input = argc - optind == 1 ? argv[optind] : "-";
}

/* ----------------------------------------------------------------- chunks */

typedef struct {
    rv_buf recs;            /* chunk records back to back */
    uint64_t *off;          /* n + 1 */
    size_t n, cap;
    uint32_t *doc_of;       /* document number (interned doc_id) per chunk */
    uint64_t *fp;           /* near-duplicate key per chunk */
    char *meta;             /* the input stream's metadata */
} chunk_set;

static void chunk_get(const chunk_set *cs, size_t i, rv_chunk *c)
{
    if (rv_chunk_decode(cs->recs.data + cs->off[i], (size_t)(cs->off[i + 1] - cs->off[i]), c) < 0)
        rv_die("internal: chunk %zu: %s", i, rv_error_get());
}

static void read_chunks(const char *path, chunk_set *cs)
{
    FILE *f = rv_open_input(path, 1);
    rv_stream_reader *r = rv_stream_reader_open(f, path);
    if (!r)
        rv_die_lib();
    if (rv_stream_reader_expect(r, "chunk", RV_CHUNK_VERSION) < 0)
        rv_die_lib();
    size_t ml;
    const char *meta = rv_stream_reader_meta(r, &ml);
    cs->meta = strdup(meta);
    if (!cs->meta)
        rv_die("out of memory");
    rv_strtab docs = {0};
    rv_buf scratch = {0};
    const unsigned char *rec;
    size_t len;
    int rc;
    while ((rc = rv_stream_read(r, &rec, &len)) == 1) {
        rv_chunk c;
        if (rv_chunk_decode(rec, len, &c) < 0)
            rv_die("%s: record %zu: %s", rv_stream_reader_name(r), cs->n, rv_error_get());
        if (cs->n + 1 >= cs->cap) {
            size_t cap = cs->cap ? cs->cap * 2 : 4096;
            if (cap >= UINT32_MAX)
                rv_die("%s: more than %u chunks", rv_stream_reader_name(r), UINT32_MAX - 1);
            uint64_t *o = realloc(cs->off, (cap + 1) * sizeof *o);
            uint32_t *d = realloc(cs->doc_of, cap * sizeof *d);
            if (o)
                cs->off = o;
            if (d)
                cs->doc_of = d;
            uint64_t *h = realloc(cs->fp, cap * sizeof *h);
            if (h)
                cs->fp = h;
            if (!o || !d || !h)
                rv_die("out of memory reading chunks");
            if (cs->n == 0)
                cs->off[0] = 0;
            cs->cap = cap;
        }
        uint32_t id;
        if (rv_strtab_intern(&docs, c.doc_id.p, c.doc_id.len, rv_strtab_hash(c.doc_id.p, c.doc_id.len), &id,
                             NULL) < 0 ||
            rv_text_fingerprint(c.text.p, c.text.len, &scratch, &cs->fp[cs->n]) < 0 ||
            rv_buf_append(&cs->recs, rec, len) < 0)
            rv_die_lib();
        cs->doc_of[cs->n] = id;
        cs->off[++cs->n] = cs->recs.len;
    }
    if (rc < 0)
        rv_die_lib();
    rv_strtab_free(&docs);
    rv_buf_free(&scratch);
    rv_stream_reader_close(r);
    rv_close_input(f);
}

static void free_chunks(chunk_set *cs)
{
    rv_buf_free(&cs->recs);
    free(cs->off);
    free(cs->doc_of);
    free(cs->fp);
    free(cs->meta);
}

/* ----------------------------------------------------------------- output */

typedef struct {
    const opts *o;
    const chunk_set *cs;
    rv_output out;
    rv_stream_writer *w;
    rv_buf rec, line;
    uint32_t *ids;
    size_t ids_cap;
    rv_str *texts;          /* --jsonl: the texts of one group */
} sink;

static void put_texts_line(sink *s, const char *src, size_t src_len, size_t n, const rv_str *texts)
{
    rv_buf *l = &s->line;
    l->len = 0;
    int rc = 0;
    if (src_len)
        rc = rv_buf_append(l, "{\"src\": ", 8) < 0 || rv_json_put_string(l, src, src_len) < 0 ||
             rv_buf_append(l, ", \"text\": ", 10) < 0;
    rc = rc || rv_buf_putc(l, '[') < 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = (i && rv_buf_append(l, ", ", 2) < 0) || rv_json_put_string(l, texts[i].p, texts[i].len) < 0;
    rc = rc || rv_buf_putc(l, ']') < 0 || (src_len && rv_buf_putc(l, '}') < 0) || rv_buf_putc(l, '\n') < 0;
    if (rc)
        rv_die_lib();
    if (fwrite(l->data, 1, l->len, s->out.f) != l->len)
        rv_die("%s: write error: %s", s->o->output ? s->o->output : "<stdout>", strerror(errno));
}

static int emit_group(void *ctx, const uint32_t *members, const float *scores, uint32_t n)
{
    sink *s = ctx;
    const char *src = s->o->src;
    size_t src_len = strlen(src);
    if (s->o->jsonl) {
        for (uint32_t i = 0; i < n; i++) {
            rv_chunk c;
            chunk_get(s->cs, members[i], &c);
            s->texts[i] = c.text;
        }
        put_texts_line(s, src, src_len, n, s->texts);
        return 0;
    }
    if (rv_group_begin(&s->rec, src, src_len, n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        rv_chunk c;
        chunk_get(s->cs, members[i], &c);
        if (c.n_ids > s->ids_cap) {
            uint32_t *p = realloc(s->ids, c.n_ids * sizeof *p);
            if (!p)
                return rv_error_set("out of memory");
            s->ids = p;
            s->ids_cap = c.n_ids;
        }
        for (uint32_t j = 0; j < c.n_ids; j++)
            s->ids[j] = rv_load_u32(c.ids + 4 * (size_t)j);
        if (rv_group_add(&s->rec, c.doc_id.p, c.doc_id.len, c.index, c.text.p, c.text.len, s->ids, c.n_ids,
                         scores[i]) < 0)
            return -1;
    }
    return rv_stream_write(s->w, s->rec.data, s->rec.len);
}

static void open_sink(sink *s, const opts *o, const chunk_set *cs, const char *meta)
{
    memset(s, 0, sizeof *s);
    s->o = o;
    s->cs = cs;
    rv_output_open(&s->out, o->output, !o->jsonl, o->force);
    if (!(s->texts = malloc(o->group_size * sizeof *s->texts)))
        rv_die("out of memory");
    if (!o->jsonl) {
        s->w = rv_stream_writer_open(s->out.f, o->output, "group", RV_GROUP_VERSION, meta, 0);
        if (!s->w)
            rv_die_lib();
    }
}

static void close_sink(sink *s)
{
    if (s->w) {
        if (rv_stream_writer_finish(s->w) < 0)
            rv_die_lib();
        rv_stream_writer_free(s->w);
    }
    rv_output_commit(&s->out);
    rv_buf_free(&s->rec);
    rv_buf_free(&s->line);
    free(s->ids);
    free(s->texts);
}

/* ---------------------------------------------------------------- metadata */

static void meta_common(rv_buf *m, const opts *o, const char *mode)
{
    if (rv_buf_printf(m, "{\"producer\":\"rv-bm25group %s\",\"mode\":\"%s\",\"group_size\":%u,\"seed\":%llu,\"src\":",
                      RV_VERSION, mode, o->group_size, (unsigned long long)o->seed) < 0 ||
        rv_json_put_string(m, o->src, strlen(o->src)) < 0)
        rv_die_lib();
}

static void meta_bm25(rv_buf *m, const opts *o, const rv_bm25_index *ix, const char *chunks_meta)
{
    const rv_bm25_params *p = rv_bm25_index_params(ix);
    const rv_analyzer *an = rv_bm25_index_analyzer(ix);
    const char *sw = rv_analyzer_stopwords_name(an);
    meta_common(m, o, "bm25");
    int rc = 0;
    if (o->n_seeds)
        rc = rv_buf_printf(m, ",\"seeds\":%zu", o->n_seeds) < 0;
    else
        rc = rv_buf_printf(m, ",\"seeds\":\"all\"") < 0;
    rc = rc || rv_buf_printf(m, ",\"other_docs\":%s,\"max_reuse\":%u,\"short\":\"%s\"",
                             o->other_docs ? "true" : "false", o->max_reuse, o->fill_short ? "fill" : "drop") < 0;
    rc = rc || rv_buf_printf(m, ",\"bm25\":{\"variant\":\"%s\",\"k1\":%.17g,\"b\":%.17g,\"delta\":%.17g,"
                                "\"stopwords\":", rv_bm25_variant_name(p->variant), p->k1, p->b, p->delta) < 0;
    rc = rc || rv_json_put_string(m, sw, strlen(sw)) < 0;
    rc = rc || rv_buf_printf(m, ",\"stemmer\":\"%s\",\"docs\":%zu,\"terms\":%zu,\"avgdl\":%.17g},\"chunks\":%s}",
                             rv_analyzer_stemmer_name(an), rv_bm25_index_docs(ix), rv_bm25_index_terms(ix),
                             rv_bm25_index_avgdl(ix), chunks_meta) < 0;
    if (rc)
        rv_die_lib();
}

/* -------------------------------------------------------------- BM25 index */

static rv_bm25_index *get_index(const opts *o, const chunk_set *cs)
{
    double t0 = rv_now();
    FILE *f = o->index ? fopen(o->index, "rb") : NULL;
    if (!f && o->index && errno != ENOENT)
        rv_die("%s: cannot open: %s", o->index, strerror(errno));
    if (f) {
        rv_bm25_index *ix = rv_bm25_index_load(f, o->index);
        if (!ix)
            rv_die_lib();
        fclose(f);
        rv_analyzer *want = rv_analyzer_new(o->stopwords, o->stem);
        if (!want)
            rv_die("--stopwords: %s", rv_error_get());
        const rv_bm25_params *p = rv_bm25_index_params(ix);
        const rv_analyzer *an = rv_bm25_index_analyzer(ix);
        int plus = p->variant == RV_BM25_BM25L || p->variant == RV_BM25_BM25PLUS;
        if (p->variant != o->params.variant || p->k1 != o->params.k1 || p->b != o->params.b ||
            (plus && p->delta != o->params.delta) || rv_analyzer_stemmer(an) != rv_analyzer_stemmer(want) ||
            rv_analyzer_stopwords_hash(an) != rv_analyzer_stopwords_hash(want))
            rv_die("%s: built with --variant %s --k1 %.17g --b %.17g --delta %.17g --stopwords %s --stem %s, "
                   "not the options given; remove it or give the same options", o->index,
                   rv_bm25_variant_name(p->variant), p->k1, p->b, p->delta, rv_analyzer_stopwords_name(an),
                   rv_analyzer_stemmer_name(an));
        rv_analyzer_free(want);
        rv_bm25_fingerprint *fp = rv_bm25_fingerprint_new();
        if (!fp)
            rv_die_lib();
        for (size_t i = 0; i < cs->n; i++) {
            rv_chunk c;
            chunk_get(cs, i, &c);
            rv_bm25_fingerprint_add(fp, c.text.p, c.text.len);
        }
        uint64_t h = rv_bm25_fingerprint_digest(fp);
        rv_bm25_fingerprint_free(fp);
        if (rv_bm25_index_docs(ix) != cs->n || rv_bm25_index_corpus_hash(ix) != h)
            rv_die("%s: built from other chunks (%zu) than the input (%zu); remove it to rebuild", o->index,
                   rv_bm25_index_docs(ix), cs->n);
        if (!rv_bm25_index_has_forward(ix))
            rv_die("%s: built without the chunks' term sequences (by rv-search?); remove it to rebuild", o->index);
        if (!o->quiet)
            fprintf(stderr, "rv-bm25group: loaded the index %s in %.1fs\n", o->index, rv_now() - t0);
        return ix;
    }
    rv_bm25_builder *b = rv_bm25_builder_new(o->stopwords, o->stem, &o->params, 1, o->threads);
    if (!b)
        rv_die("%s", rv_error_get());
    size_t batch = 8192;
    const char **texts = malloc(batch * sizeof *texts);
    size_t *lens = malloc(batch * sizeof *lens);
    if (!texts || !lens)
        rv_die("out of memory");
    for (size_t start = 0; start < cs->n; start += batch) {
        size_t cnt = cs->n - start < batch ? cs->n - start : batch;
        for (size_t i = 0; i < cnt; i++) {
            rv_chunk c;
            chunk_get(cs, start + i, &c);
            texts[i] = c.text.p;
            lens[i] = c.text.len;
        }
        if (rv_bm25_builder_add(b, cnt, texts, lens) < 0)
            rv_die("%s", rv_error_get());
    }
    free(texts);
    free(lens);
    rv_bm25_index *ix = rv_bm25_builder_finish(b);
    if (!ix)
        rv_die("%s", rv_error_get());
    if (!o->quiet)
        fprintf(stderr, "rv-bm25group: indexed %zu chunks (%zu terms, %llu postings, mean length %.1f) in %.1fs\n",
                rv_bm25_index_docs(ix), rv_bm25_index_terms(ix), (unsigned long long)rv_bm25_index_postings(ix),
                rv_bm25_index_avgdl(ix), rv_now() - t0);
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

/* ------------------------------------------------------------------ modes */

static void on_progress(void *ctx, uint64_t done)
{
    rv_progress_update(ctx, done);
}

static void summary(const opts *o, const rv_group_stats *st, size_t n_chunks, double secs)
{
    if (o->quiet)
        return;
    fprintf(stderr, "rv-bm25group: %llu groups of %u from %zu chunks in %.1fs\n", (unsigned long long)st->groups,
            o->group_size, n_chunks, secs);
    if (o->mode == MODE_BM25) {
        fprintf(stderr, "rv-bm25group: seeds %llu: %llu skipped (used up by --max-reuse), %llu dropped short, "
                        "%llu filled (%llu random members)\n",
                (unsigned long long)st->seeds, (unsigned long long)st->seeds_reused_out,
                (unsigned long long)st->short_dropped, (unsigned long long)st->short_filled,
                (unsigned long long)st->filled_members);
        fprintf(stderr, "rv-bm25group: mean neighbour score %.4f over %llu neighbours; candidates skipped: %llu "
                        "near-duplicates, %llu same document, %llu reused; %llu deeper searches\n",
                st->neighbours ? st->neighbour_score_sum / (double)st->neighbours : 0.0,
                (unsigned long long)st->neighbours, (unsigned long long)st->near_dup_skipped,
                (unsigned long long)st->same_doc_skipped, (unsigned long long)st->reuse_skipped,
                (unsigned long long)st->deeper_searches);
    } else {
        fprintf(stderr, "rv-bm25group: %llu chunks waited a group for a near-duplicate, %llu left over at the end\n",
                (unsigned long long)st->near_dup_skipped, (unsigned long long)st->dropped_chunks);
    }
    fprintf(stderr, "rv-bm25group: %llu of %zu chunks used (at most %u times each)\n",
            (unsigned long long)st->chunks_used, n_chunks, st->max_uses);
}

static void run_grouping(const opts *o)
{
    chunk_set cs = {0};
    read_chunks(o->input, &cs);
    double t0 = rv_now();
    rv_group_stats st;
    sink s;
    rv_buf meta = {0};
    if (o->mode == MODE_INTERLEAVE) {
        meta_common(&meta, o, "interleave");
        if (rv_buf_printf(&meta, ",\"docs_per_group\":%u,\"chunks\":%s}", o->docs_per_group, cs.meta) < 0)
            rv_die_lib();
        if (!o->quiet)
            fprintf(stderr, "rv-bm25group: interleave, %u documents per group, groups of %u\n", o->docs_per_group,
                    o->group_size);
        open_sink(&s, o, &cs, (const char *)meta.data);
        if (rv_interleave_groups(cs.n, cs.doc_of, cs.fp, o->group_size, o->docs_per_group, emit_group, &s, &st) < 0)
            rv_die_lib();
        close_sink(&s);
    } else {
        if (cs.n == 0)
            rv_die("%s: no chunks to group", strcmp(o->input, "-") == 0 ? "<stdin>" : o->input);
        rv_bm25_index *ix = get_index(o, &cs);
        meta_bm25(&meta, o, ix, cs.meta);
        if (!o->quiet) {
            const rv_bm25_params *p = rv_bm25_index_params(ix);
            fprintf(stderr, "rv-bm25group: bm25 %s k1 %g b %g delta %g, stopwords %s, stemmer %s; groups of %u, "
                            "seeds %s, seed %llu, max reuse %u, short %s%s\n",
                    rv_bm25_variant_name(p->variant), p->k1, p->b, p->delta,
                    rv_analyzer_stopwords_name(rv_bm25_index_analyzer(ix)),
                    rv_analyzer_stemmer_name(rv_bm25_index_analyzer(ix)), o->group_size,
                    o->n_seeds ? "first N" : "all", (unsigned long long)o->seed, o->max_reuse,
                    o->fill_short ? "fill" : "drop", o->other_docs ? ", other documents only" : "");
        }
        t0 = rv_now();
        open_sink(&s, o, &cs, (const char *)meta.data);
        rv_progress pr;
        size_t n_seeds = o->n_seeds && o->n_seeds < cs.n ? o->n_seeds : cs.n;
        rv_progress_start(&pr, "rv-bm25group", "seeds", n_seeds, o->quiet);
        rv_group_opts go = {o->group_size, o->other_docs, o->max_reuse, o->fill_short, o->seed, o->n_seeds,
                            o->threads, on_progress, &pr};
        if (rv_bm25_groups(ix, cs.fp, cs.doc_of, &go, emit_group, &s, &st) < 0)
            rv_die_lib();
        rv_progress_finish(&pr);
        close_sink(&s);
        rv_bm25_index_free(ix);
    }
    summary(o, &st, cs.n, rv_now() - t0);
    rv_buf_free(&meta);
    free_chunks(&cs);
}

/* --from-jsonl: each line of a Revela batch file becomes one group. */
static void run_import(const opts *o)
{
    const char *name = strcmp(o->input, "-") == 0 ? "<stdin>" : o->input;
    FILE *in = rv_open_input(o->input, 0);
    rv_lines lr;
    rv_lines_init(&lr, in);
    rv_json_parser *jp = rv_json_parser_new();
    if (!jp)
        rv_die_lib();
    char meta[256];
    snprintf(meta, sizeof meta, "{\"producer\":\"rv-bm25group %s\",\"mode\":\"import\",\"source\":\"jsonl\"}",
             RV_VERSION);
    sink s;
    open_sink(&s, o, NULL, meta);
    rv_str *texts = NULL;
    size_t texts_cap = 0;
    uint64_t groups = 0;
    char *line;
    size_t len;
    int rc;
    while ((rc = rv_lines_next(&lr, &line, &len)) == 1) {
        size_t j = 0;
        while (j < len && (line[j] == ' ' || line[j] == '\t'))
            j++;
        if (j == len)
            continue;
        rv_json *v = rv_json_parse(jp, line, len);
        if (!v)
            rv_die("%s:%zu: %s", name, lr.lineno, rv_error_get());
        const rv_json *list = v, *src = NULL;
        if (v->type == RV_JSON_OBJECT) {
            list = rv_json_get(v, "text");
            src = rv_json_get(v, "src");
            if (!list)
                rv_die("%s:%zu: text: expected a list of chunk texts, found no \"text\" field", name, lr.lineno);
            if (src && src->type != RV_JSON_STRING && src->type != RV_JSON_NULL)
                rv_die("%s:%zu: src: expected a string, found %s", name, lr.lineno, rv_json_type_name(src->type));
        }
        if (list->type != RV_JSON_ARRAY)
            rv_die("%s:%zu: expected a JSON list of chunk texts (or {\"src\", \"text\"}), found %s", name, lr.lineno,
                   rv_json_type_name(list->type));
        if (list->len > UINT32_MAX)
            rv_die("%s:%zu: too many texts", name, lr.lineno);
        if (list->len > texts_cap) {
            texts_cap = list->len;
            free(texts);
            if (!(texts = malloc(texts_cap * sizeof *texts)))
                rv_die("out of memory");
        }
        for (size_t i = 0; i < list->len; i++) {
            const rv_json *t = &list->u.items[i];
            if (t->type != RV_JSON_STRING)
                rv_die("%s:%zu: text[%zu]: expected a string, found %s", name, lr.lineno, i,
                       rv_json_type_name(t->type));
            texts[i] = (rv_str){t->u.string, t->len};
        }
        const char *sp = src && src->type == RV_JSON_STRING ? src->u.string : "";
        size_t sl = src && src->type == RV_JSON_STRING ? src->len : 0;
        if (o->jsonl) {
            put_texts_line(&s, sp, sl, list->len, texts);
        } else {
            if (rv_group_begin(&s.rec, sp, sl, (uint32_t)list->len) < 0)
                rv_die_lib();
            for (size_t i = 0; i < list->len; i++)
                if (rv_group_add(&s.rec, "", 0, (uint32_t)i, texts[i].p, texts[i].len, NULL, 0, 0.0f) < 0)
                    rv_die_lib();
            if (rv_stream_write(s.w, s.rec.data, s.rec.len) < 0)
                rv_die_lib();
        }
        groups++;
    }
    if (rc < 0)
        rv_die("%s:%s", name, rv_error_get());
    close_sink(&s);
    free(texts);
    rv_json_parser_free(jp);
    rv_lines_free(&lr);
    rv_close_input(in);
    if (!o->quiet)
        fprintf(stderr, "rv-bm25group: imported %llu groups\n", (unsigned long long)groups);
}

int main(int argc, char **argv)
{
    rv_cli_init("rv-bm25group");
    opts o;
    parse_args(argc, argv, &o);
    if (o.from_jsonl)
        run_import(&o);
    else
        run_grouping(&o);
    return RV_EXIT_OK;
}
