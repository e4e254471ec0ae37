/* rv-search — exact top-k search of query embeddings against corpus
 * embeddings by inner product; TREC run or run stream out. Wiring only:
 * loading lives in lib/emb_matrix.c and lib/npy.c, the search in
 * lib/dense_search.c, the selection in lib/topk.c. With --device cuda the
 * candidates come from the GPU (kernels/search_gpu.cu, in the backend
 * library loaded by lib/cuda_loader.c) and are rescored exactly on the host
 * by the same code, so the output is that of --device cpu.
 *
 * --bm25 hands the whole command line to the lexical front end
 * (cmd/common/search_bm25.c) before any dense option is parsed. */
#include "cli.h"
#include "buf.h"
#include "cuda_loader.h"
#include "dense_search.h"
#include "emb_matrix.h"
#include "json.h"
#include "progress.h"
#include "records.h"
#include "search_bm25.h"
#include "stream.h"
#include "version.h"

#include "../kernels/search_gpu.h"   /* the CUDA backend's search entry points (loaded at run time) */

#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_K 100
#define DEFAULT_TAG "rv-search"
#define DEFAULT_DOC_SEP "#"
#define MAX_SOURCES 4096

_Noreturn static void usage(void)
{
    printf("Usage: rv-search --corpus EMB [OPTION]... [QUERIES]\n"
           "Exact maximum-inner-product search: rank every corpus vector for every query\n"
           "(cosine similarity when the vectors are L2-normalised) and print the top k as a\n"
           "TREC run. QUERIES is an emb stream; with no QUERIES, or when it is -, read\n"
           "standard input.\n"
           "\n"
           "Inputs:\n"
           "  -c, --corpus EMB        corpus emb stream; repeat for shards (searched as one\n"
           "                          corpus, in the order given)\n"
           "      --corpus-npy X.npy  corpus shard from a 2-D .npy array ('<f4', '<f2', '<f8')\n"
           "      --corpus-ids FILE   ids of the preceding --corpus-npy, one per line\n"
           "                          (default: its row numbers 0, 1, ...)\n"
           "      --queries-npy X.npy queries from a .npy array instead of an emb stream\n"
           "      --queries-ids FILE  ids of --queries-npy, one per line (default: row numbers)\n"
           "Search:\n"
           "  -k, --k N               hits per query (default %d; a smaller corpus is ranked whole)\n"
           "      --doc-agg MODE      none (default) or max: score a document by its best chunk\n"
           "                          (MaxP) and rank documents; the document id is the corpus\n"
           "                          id up to the last --doc-id-sep\n"
           "      --doc-id-sep STR    separator between document id and chunk number (default \"%s\")\n"
           "  -t, --threads N         worker threads (default: all processors, or $OMP_NUM_THREADS)\n"
           "      --device DEV        cpu (default) or cuda: candidates from a GPU (fp32 GEMM and\n"
           "                          top-k), rescored exactly on the CPU: the same output\n"
           "Output:\n"
           "      --tag NAME          run tag, the last TREC column (default %s)\n"
           "  -s, --stream            write a run stream instead of TREC text\n"
           "  -o, --output FILE       write FILE (atomically, via FILE.part) instead of standard output\n"
           "  -f, --force             write a stream even when standard output is a terminal\n"
           "  -q, --quiet             no parameter, progress or timing lines on standard error\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n"
           "\n"
           "Ties rank by corpus order (file order, then record order). Scores print with %%.9g,\n"
           "so they read back as the same float32 values.\n"
           "Exit status: 0 success, 1 bad data or I/O error, 2 usage error.\n"
           "Example:\n"
           "  rv-search --corpus corpus.emb -k 10 < queries.emb > run.trec\n",
           DEFAULT_K, DEFAULT_DOC_SEP, DEFAULT_TAG);
    exit(RV_EXIT_OK);
}

/* --------------------------------------------------------------- options */

typedef enum { SOURCE_STREAM, SOURCE_NPY } source_kind;

typedef struct {
    source_kind kind;
    const char *path;      /* stream or .npy */
    const char *ids;       /* id list of an .npy (NULL: row numbers) */
} source;

typedef enum { AGG_NONE, AGG_MAX } doc_agg;

typedef struct {
    source corpus[MAX_SOURCES];
    int n_corpus;
    source queries;
    uint32_t k;
    int threads;            /* 0: OpenMP default */
    const char *tag;
    const char *output;
    int stream, force, quiet;
    doc_agg agg;
    const char *doc_sep;
    int cuda;               /* --device cuda */
} search_opts;

enum {
    OPT_CORPUS_NPY = 256, OPT_CORPUS_IDS, OPT_QUERIES_NPY, OPT_QUERIES_IDS, OPT_TAG, OPT_DEVICE,
    OPT_DOC_AGG, OPT_DOC_SEP
};

static int is_stdin(const char *path) { return strcmp(path, "-") == 0; }

static void parse_args(int argc, char **argv, search_opts *o)
{
    static const struct option opts[] = {
        {"corpus", required_argument, 0, 'c'},
        {"corpus-npy", required_argument, 0, OPT_CORPUS_NPY},
        {"corpus-ids", required_argument, 0, OPT_CORPUS_IDS},
        {"queries-npy", required_argument, 0, OPT_QUERIES_NPY},
        {"queries-ids", required_argument, 0, OPT_QUERIES_IDS},
        {"k", required_argument, 0, 'k'},
        {"threads", required_argument, 0, 't'},
        {"tag", required_argument, 0, OPT_TAG},
        {"device", required_argument, 0, OPT_DEVICE},
        {"doc-agg", required_argument, 0, OPT_DOC_AGG},
        {"doc-id-sep", required_argument, 0, OPT_DOC_SEP},
        {"stream", no_argument, 0, 's'},
        {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->k = DEFAULT_K;
    o->tag = DEFAULT_TAG;
    o->doc_sep = DEFAULT_DOC_SEP;
    o->agg = AGG_NONE;
    const char *queries_npy = NULL, *queries_ids = NULL, *device = "cpu";
    int c, last_was_npy = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:k:t:so:fqhV", opts, NULL)) != -1) {
        int npy_now = 0;
        switch (c) {
        case 'c':
        case OPT_CORPUS_NPY:
            if (o->n_corpus == MAX_SOURCES)
                rv_die_usage("too many corpus shards (at most %d)", MAX_SOURCES);
            o->corpus[o->n_corpus++] = (source){c == 'c' ? SOURCE_STREAM : SOURCE_NPY, optarg, NULL};
            npy_now = c == OPT_CORPUS_NPY;
            break;
        case OPT_CORPUS_IDS:
            if (!last_was_npy)
                rv_die_usage("--corpus-ids must follow the --corpus-npy it names the rows of");
            o->corpus[o->n_corpus - 1].ids = optarg;
            break;
        case OPT_QUERIES_NPY:
            if (queries_npy)
                rv_die_usage("--queries-npy given twice");
            queries_npy = optarg;
            break;
        case OPT_QUERIES_IDS:
            if (queries_ids)
                rv_die_usage("--queries-ids given twice");
            queries_ids = optarg;
            break;
        case 'k': o->k = (uint32_t)rv_parse_count("--k", optarg, UINT32_MAX); break;
        case 't': o->threads = (int)rv_parse_count("--threads", optarg, 4096); break;
        case OPT_TAG:
            o->tag = optarg;
            break;
        case OPT_DEVICE:
            device = optarg;
            break;
        case OPT_DOC_AGG:
            if (strcmp(optarg, "none") == 0)
                o->agg = AGG_NONE;
            else if (strcmp(optarg, "max") == 0)
                o->agg = AGG_MAX;
            else
                rv_die_usage("--doc-agg: expected none or max, found \"%s\"", optarg);
            break;
        case OPT_DOC_SEP:
            if (!*optarg)
                rv_die_usage("--doc-id-sep: expected a non-empty separator");
            o->doc_sep = optarg;
            break;
        case 's': o->stream = 1; break;
        case 'o': o->output = optarg; break;
        case 'f': o->force = 1; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage();
        case 'V': rv_print_version();
        default: rv_die_bad_option(c, argv);
        }
        last_was_npy = npy_now;
    }
    if (strcmp(device, "cuda") == 0)
        o->cuda = 1;
    else if (strcmp(device, "cpu") != 0)
        rv_die_usage("--device: expected cpu or cuda, found \"%s\"", device);
    if (o->n_corpus == 0)
        rv_die_usage("no corpus: give --corpus EMB or --corpus-npy X.npy");
    if (!*o->tag || strpbrk(o->tag, " \t\r\n\v\f"))
        rv_die_usage("--tag: expected a non-empty name without whitespace, found \"%s\"", o->tag);
    if (queries_ids && !queries_npy)
        rv_die_usage("--queries-ids needs --queries-npy");
    if (argc - optind > 1)
        rv_die_usage("expected at most one QUERIES file, found %d operands", argc - optind);
    if (queries_npy && argc - optind == 1)
        rv_die_usage("give the queries either as --queries-npy or as a QUERIES stream, not both");
    if (queries_npy)
        o->queries = (source){SOURCE_NPY, queries_npy, queries_ids};
    else
        o->queries = (source){SOURCE_STREAM, argc - optind == 1 ? argv[optind] : "-", NULL};
    int from_stdin = is_stdin(o->queries.path) + (o->queries.ids && is_stdin(o->queries.ids));
    for (int i = 0; i < o->n_corpus; i++)
        from_stdin += is_stdin(o->corpus[i].path) + (o->corpus[i].ids && is_stdin(o->corpus[i].ids));
    if (from_stdin > 1)
        rv_die_usage("only one input can be standard input (-)");
}

/* ------------------------------------------------------------- loading */

static const char *shown_name(const char *path) { return is_stdin(path) ? "<stdin>" : path; }

static void load_source(rv_emb_matrix *m, const source *s)
{
    FILE *f = rv_open_input(s->path, 1);
    int rc;
    if (s->kind == SOURCE_STREAM) {
        rc = rv_emb_matrix_add_stream(m, f, s->path);
    } else {
        FILE *ids = s->ids ? rv_open_input(s->ids, 0) : NULL;
        rc = rv_emb_matrix_add_npy(m, f, shown_name(s->path), ids, s->ids ? shown_name(s->ids) : NULL);
        rv_close_input(ids);
    }
    if (rc < 0)
        rv_die_lib();
    rv_close_input(f);
}

/* ---------------------------------------------------------- CUDA backend */

typedef struct {
    rv_search_gpu *(*open)(int, const void *, rv_wtype, size_t, uint32_t, const rv_search_gpu_params *);
    const char *(*describe)(const rv_search_gpu *);
    rv_dense_select_fn select;   /* rv_search_gpu_select */
    void (*close)(rv_search_gpu *);
} gpu_api;

/* The backend's search functions; exits with the loader's message (every
 * path tried) when there is no backend. Called before the inputs are read,
 * so a missing backend costs nothing. */
static void gpu_api_load(gpu_api *a)
{
    if (!(a->open = (rv_search_gpu * (*)(int, const void *, rv_wtype, size_t, uint32_t, const rv_search_gpu_params *))
              rv_cuda_backend_sym("rv_search_gpu_open")) ||
        !(a->describe = (const char *(*)(const rv_search_gpu *))rv_cuda_backend_sym("rv_search_gpu_describe")) ||
        !(a->select = (rv_dense_select_fn)rv_cuda_backend_sym("rv_search_gpu_select")) ||
        !(a->close = (void (*)(rv_search_gpu *))rv_cuda_backend_sym("rv_search_gpu_close")))
        rv_die("--device cuda: %s", rv_error_get());
}

/* A size from the environment (tuning and tests; see rv-search(1)). */
static size_t env_size(const char *name, size_t fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || v[0] == '-')
        rv_die("%s: expected a non-negative integer, found \"%s\"", name, v);
    return (size_t)x;
}

/* ---------------------------------------------------------- dense mode */

typedef struct {
    const search_opts *o;
    const rv_emb_matrix *queries, *corpus;
    const size_t *group_first_row;   /* MaxP: a row of each group (its id gives the doc id) */
    FILE *out;
    rv_stream_writer *writer;
    rv_buf text;
    rv_progress progress;
} run_writer;

static rv_str hit_id(const run_writer *w, uint32_t index)
{
    if (w->group_first_row)
        return rv_doc_id_of(rv_emb_matrix_id(w->corpus, w->group_first_row[index]), w->o->doc_sep);
    return rv_emb_matrix_id(w->corpus, index);
}

static int emit_hits(void *ctx, size_t q, const rv_scored *hits, uint32_t n)
{
    run_writer *w = ctx;
    rv_str qid = rv_emb_matrix_id(w->queries, q);
    rv_buf *b = &w->text;
    b->len = 0;
    if (w->writer) {
        if (rv_run_begin(b, qid.p, qid.len, n) < 0)
            return -1;
        for (uint32_t i = 0; i < n; i++) {
            rv_str id = hit_id(w, hits[i].index);
            if (rv_run_add(b, id.p, id.len, (double)hits[i].score) < 0)
                return -1;
        }
        if (rv_stream_write(w->writer, b->data, b->len) < 0)
            return -1;
    } else {
        for (uint32_t i = 0; i < n; i++) {
            rv_str id = hit_id(w, hits[i].index);
            if (rv_buf_printf(b, "%.*s Q0 %.*s %u %.9g %s\n", (int)qid.len, qid.p, (int)id.len, id.p, i + 1,
                              (double)hits[i].score, w->o->tag) < 0)
                return -1;
        }
        if (b->len && fwrite(b->data, 1, b->len, w->out) != b->len)
            return rv_error_set("%s: write error", w->o->output ? w->o->output : "<stdout>");
    }
    rv_progress_update(&w->progress, q + 1);
    return 0;
}

static void on_progress(void *ctx, double done)
{
    run_writer *w = ctx;
    rv_progress_update(&w->progress, (uint64_t)done);
}

/* {"producer":...,"mode":"dense",...}: everything that shaped the run. */
static void run_metadata(rv_buf *m, const search_opts *o, uint32_t dim)
{
    int rc = rv_buf_printf(m, "{\"producer\":\"rv-search %s\",\"mode\":\"dense\",\"metric\":\"inner_product\","
                              "\"k\":%u,\"tag\":",
                           RV_VERSION, o->k);
    rc |= rv_json_put_string(m, o->tag, strlen(o->tag));
    rc |= rv_buf_printf(m, ",\"dim\":%u,\"corpus\":[", dim);
    for (int i = 0; i < o->n_corpus; i++) {
        const char *name = shown_name(o->corpus[i].path);
        rc |= rv_buf_printf(m, "%s", i ? "," : "");
        rc |= rv_json_put_string(m, name, strlen(name));
    }
    const char *qname = shown_name(o->queries.path);
    rc |= rv_buf_printf(m, "],\"queries\":");
    rc |= rv_json_put_string(m, qname, strlen(qname));
    rc |= rv_buf_printf(m, ",\"doc_agg\":\"%s\"", o->agg == AGG_MAX ? "max" : "none");
    if (o->agg == AGG_MAX) {
        rc |= rv_buf_printf(m, ",\"doc_id_sep\":");
        rc |= rv_json_put_string(m, o->doc_sep, strlen(o->doc_sep));
    }
    rc |= rv_buf_append(m, "}", 2);   /* with the NUL the writer expects */
    if (rc < 0)
        rv_die_lib();
}

static void check_doc_ids(const rv_emb_matrix *corpus, const size_t *first_row, uint32_t n_groups, const char *sep)
{
    for (uint32_t g = 0; g < n_groups; g++) {
        rv_str id = rv_emb_matrix_id(corpus, first_row[g]);
        if (rv_doc_id_of(id, sep).len == 0)
            rv_die("corpus: row %zu: id \"%.*s\" gives an empty document id (separator \"%s\")", first_row[g],
                   (int)(id.len > 64 ? 64 : id.len), id.p, sep);
    }
}

static int run_dense(const search_opts *o)
{
    double t0 = rv_now();
    gpu_api gpu = {0};
    if (o->cuda)
        gpu_api_load(&gpu);
    rv_emb_matrix corpus, queries;
    rv_emb_matrix_init(&corpus);
    rv_emb_matrix_init(&queries);
    for (int i = 0; i < o->n_corpus; i++)
        load_source(&corpus, &o->corpus[i]);
    load_source(&queries, &o->queries);
    if (queries.rows && corpus.rows && queries.dim != corpus.dim)
        rv_die("%s: query dimension %u does not match corpus dimension %u of %s", shown_name(o->queries.path),
               queries.dim, corpus.dim, corpus.dim_source);
    if (rv_emb_matrix_check_ids(&corpus, "corpus", !o->stream) < 0 ||
        rv_emb_matrix_check_ids(&queries, "queries", !o->stream) < 0)
        rv_die_lib();

    rv_dense_params p = {0};
    p.k = o->k;
    p.threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    size_t *first_row = NULL;
    uint32_t *group = NULL;
    if (o->agg == AGG_MAX) {
        if (rv_emb_matrix_groups(&corpus, o->doc_sep, &group, &p.n_groups, &first_row) < 0)
            rv_die_lib();
        check_doc_ids(&corpus, first_row, p.n_groups, o->doc_sep);
        p.group_of_row = group;
    }
    double t_loaded = rv_now(), t_device = 0;
    rv_search_gpu *g = NULL;
    if (o->cuda) {
        /* Limit of the GPU candidate buffers (search_gpu.h); a corpus smaller
         * than k is ranked whole, so only min(k, rows or documents) counts. */
        size_t targets = o->agg == AGG_MAX ? p.n_groups : corpus.rows;
        if (o->k > RV_SEARCH_GPU_MAX_K && targets > RV_SEARCH_GPU_MAX_K)
            rv_die("--k %u: --device cuda handles k up to %u; use --device cpu", o->k, RV_SEARCH_GPU_MAX_K);
        if (o->agg == AGG_MAX && p.n_groups) {
            /* MaxP: the GPU ranks rows, and a document may fill several of
             * the top rows, so ask for k + margin documents' worth of rows at
             * the corpus's mean chunks per document (twice, for documents
             * with more). Fewer than k documents among them only costs an
             * exact rescan of that query (dense_search.h). */
            uint64_t cap = (uint64_t)o->k + 32 + o->k / 4, per_doc = (corpus.rows + p.n_groups - 1) / p.n_groups;
            uint64_t rows = (cap < p.n_groups ? cap : p.n_groups) * 2 * per_doc;
            p.select_rows = (uint32_t)(rows < RV_SEARCH_GPU_MAX_CAP ? rows : RV_SEARCH_GPU_MAX_CAP);
        }
        static const rv_wtype wtype[] = {[RV_DTYPE_F32] = RV_WT_F32, [RV_DTYPE_F16] = RV_WT_F16,
                                         [RV_DTYPE_BF16] = RV_WT_BF16};
        rv_search_gpu_params gp = {env_size("RV_SEARCH_GPU_BLOCK", 0), env_size("RV_SEARCH_GPU_QUERY_TILE", 0),
                                   getenv("RV_SEARCH_GPU_RESIDENT") && *getenv("RV_SEARCH_GPU_RESIDENT")
                                       ? (int)env_size("RV_SEARCH_GPU_RESIDENT", 0)
                                       : -1};
        rv_dense_matrix cv = rv_emb_matrix_view(&corpus);
        if (!(g = gpu.open(0, cv.data, wtype[cv.dtype], cv.rows, corpus.rows ? corpus.dim : queries.dim, &gp)))
            rv_die("--device cuda: %s", rv_error_get());
        t_device = rv_now() - t_loaded;   /* counted in the search time below: context and corpus upload */
    }
    if (!o->quiet) {
        rv_warn("%zu queries, %zu corpus vectors (%d file%s), dim %u, %s; k %u, %d thread%s, doc-agg %s; "
                "loaded in %.2fs",
                queries.rows, corpus.rows, o->n_corpus, o->n_corpus == 1 ? "" : "s",
                corpus.rows ? corpus.dim : queries.dim, rv_dtype_name(corpus.dtype), o->k, p.threads,
                p.threads == 1 ? "" : "s", o->agg == AGG_MAX ? "max" : "none", t_loaded - t0);
        if (o->agg == AGG_MAX)
            rv_warn("%u documents (ids up to the last \"%s\")", p.n_groups, o->doc_sep);
        if (g)
            rv_warn("device cuda: %s (backend %s), ready in %.2fs; candidates rescored exactly on %d thread%s",
                    gpu.describe(g), rv_cuda_backend_path(), t_device, p.threads, p.threads == 1 ? "" : "s");
    }

    rv_output out;
    rv_output_open(&out, o->output, o->stream, o->force);
    run_writer w = {o, &queries, &corpus, first_row, out.f, NULL, {0}, {0}};
    if (o->stream) {
        rv_buf meta = {0};
        run_metadata(&meta, o, corpus.rows ? corpus.dim : queries.dim);
        w.writer = rv_stream_writer_open(out.f, o->output, "run", RV_RUN_VERSION, (const char *)meta.data, 0);
        rv_buf_free(&meta);
        if (!w.writer)
            rv_die_lib();
    }
    rv_progress_start(&w.progress, "rv-search", "queries", queries.rows, o->quiet);
    rv_dense_matrix qm = rv_emb_matrix_view(&queries), cm = rv_emb_matrix_view(&corpus);
    rv_dense_stats stats;
    int rc = g ? rv_dense_search_select(&qm, &cm, &p, gpu.select, g, emit_hits, on_progress, &w, &stats)
               : rv_dense_search(&qm, &cm, &p, emit_hits, on_progress, &w, &stats);
    if (rc < 0)
        rv_die_lib();
    if (g)
        gpu.close(g);
    if (w.writer && rv_stream_writer_finish(w.writer) < 0)
        rv_die_lib();
    rv_progress_finish(&w.progress);
    if (!o->quiet) {
        double secs = rv_now() - t_loaded;
        double gflop = 2.0 * (double)queries.rows * (double)corpus.rows * (double)(corpus.rows ? corpus.dim : 0) * 1e-9;
        rv_warn("%.1f GFLOP/s (2 x queries x corpus x dim in %.3fs); %llu candidates rescored exactly, "
                "%llu queries rescanned in full",
                secs > 0 ? gflop / secs : 0.0, secs, (unsigned long long)stats.rescored,
                (unsigned long long)stats.full_rescans);
    }
    rv_output_commit(&out);
    rv_stream_writer_free(w.writer);
    rv_buf_free(&w.text);
    free(group);
    free(first_row);
    rv_emb_matrix_free(&corpus);
    rv_emb_matrix_free(&queries);
    return RV_EXIT_OK;
}

int main(int argc, char **argv)
{
    rv_cli_init("rv-search");
    /* --bm25 selects the lexical engine, whose options differ from the dense
     * ones: hand the whole command line to it (cmd/common/search_bm25.c). */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--bm25") == 0)
            return rv_search_bm25_main(argc, argv);
    static search_opts o;   /* large (the shard list): not on the stack */
    parse_args(argc, argv, &o);
    return run_dense(&o);
}
