/* rv-eval — trec_eval-compatible evaluation of a run against relevance
 * judgments (nDCG@k, MAP, recall@k, P@k, MRR, R-precision, counts). Wiring
 * only: parsing in lib/qrels.c and lib/trec_run.c, the join in
 * lib/ir_eval.c, the measures in lib/ir_measures.c. */
#include "cli.h"
#include "buf.h"           /* rv_buf */
#include "ir_eval.h"       /* rv_evaluate, rv_eval_table */
#include "ir_measures.h"   /* rv_measure_set, rv_measures_add */
#include "json.h"          /* rv_json_put_string */
#include "qrels.h"         /* rv_qrels_read */
#include "records.h"       /* rv_json_put_f64 */
#include "trec_run.h"      /* rv_trec_run_read */

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

_Noreturn static void usage(void)
{
    printf("Usage: rv-eval --qrels FILE [OPTION]... [RUN]\n"
           "Evaluate a ranked run against relevance judgments, as trec_eval (and pytrec_eval) does.\n"
           "RUN is a TREC run (qid Q0 docid rank score tag) or a revela run stream; with no RUN,\n"
           "or when RUN is -, read standard input.\n"
           "\n"
           "      --qrels FILE        judgments: TREC qrels (qid iter docid rel) or BEIR tsv\n"
           "                          (query-id corpus-id score, header optional); detected\n"
           "  -m, --measure M         a measure named as trec_eval names it (repeatable; default\n"
           "                          ndcg_cut.10): ndcg_cut.K[,K]... ndcg map map_cut.K P.K recall.K\n"
           "                          Rprec recip_rank num_q num_ret num_rel num_rel_ret\n"
           "  -q, --per-query         also print each query's values (trec_eval -q)\n"
           "  -c, --complete          also average judged queries missing from the run, as 0 (trec_eval -c)\n"
           "  -l, --relevance-level N least judgment that counts as relevant (default 1, trec_eval -l)\n"
           "  -M, --max-docs N        evaluate only the top N documents of each query (trec_eval -M)\n"
           "      --ignore-identical-ids  drop results whose document id equals the query id (BEIR/mteb)\n"
           "  -j, --json              print JSON: {\"MEASURE\": {\"all\": V, \"per_query\": {QID: V}}}\n"
           "  -d, --digits N          decimals of real values in text output (default 6; trec_eval: 4)\n"
           "  -o, --output FILE       write FILE (atomically, via FILE.part) instead of standard output\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n"
           "\n"
           "Output: MEASURE<TAB>all<TAB>VALUE per measure (and MEASURE<TAB>QID<TAB>VALUE per query).\n"
           "Exit status: 0 success, 1 bad data or I/O error, 2 usage error (unknown measure).\n"
           "Example:\n"
           "  rv-eval --qrels qrels/test.tsv -m ndcg_cut.10 -m recall.100 run.trec\n");
    exit(RV_EXIT_OK);
}

static void put_value(FILE *out, const rv_measure *m, double v, int digits)
{
    if (rv_measure_is_count(m))
        fprintf(out, "%lld\n", (long long)llround(v));
    else
        fprintf(out, "%.*f\n", digits, v);
}

static void print_text(FILE *out, const rv_measure_set *ms, const rv_eval_table *t, int per_query, int digits)
{
    if (per_query)
        for (size_t r = 0; r < t->n_rows; r++)
            for (size_t j = 0; j < ms->n; j++) {
                fprintf(out, "%s\t%.*s\t", ms->items[j].name, (int)t->qid_lens[r], t->qids[r]);
                put_value(out, &ms->items[j], t->values[r * ms->n + j], digits);
            }
    for (size_t j = 0; j < ms->n; j++) {
        fprintf(out, "%s\tall\t", ms->items[j].name);
        put_value(out, &ms->items[j], t->summary[j], digits);
    }
}

/* Counts as integers; other values in the shortest spelling that reads back
 * as the same double (0.2, not 0.20000000000000001). */
static void json_number(rv_buf *b, const rv_measure *m, double v)
{
    int rc;
    if (rv_measure_is_count(m))
        rc = rv_buf_printf(b, "%lld", (long long)llround(v));
    else if (!isfinite(v))
        rc = rv_json_put_f64(b, v);   /* null; cannot happen for these measures */
    else {
        char s[40];
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(s, sizeof s, "%.*g", digits, v);
            if (strtod(s, NULL) == v)
                break;
        }
        rc = rv_buf_printf(b, "%s", s);
    }
    if (rc < 0)
        rv_die_lib();
}

static void flush_buf(rv_buf *b, FILE *out)
{
    if (b->len && fwrite(b->data, 1, b->len, out) != b->len)
        rv_die("write error");
    b->len = 0;
}

static void print_json(FILE *out, const rv_measure_set *ms, const rv_eval_table *t, int per_query)
{
    rv_buf b = {0};
    if (rv_buf_putc(&b, '{') < 0)
        rv_die_lib();
    for (size_t j = 0; j < ms->n; j++) {
        const rv_measure *m = &ms->items[j];
        if (rv_buf_printf(&b, "%s\n", j ? "," : "") < 0 || rv_json_put_string(&b, m->name, strlen(m->name)) < 0 ||
            rv_buf_printf(&b, ": {\"all\": ") < 0)
            rv_die_lib();
        json_number(&b, m, t->summary[j]);
        if (per_query) {
            if (rv_buf_printf(&b, ", \"per_query\": {") < 0)
                rv_die_lib();
            for (size_t r = 0; r < t->n_rows; r++) {
                if ((r && rv_buf_printf(&b, ", ") < 0) || rv_json_put_string(&b, t->qids[r], t->qid_lens[r]) < 0 ||
                    rv_buf_printf(&b, ": ") < 0)
                    rv_die_lib();
                json_number(&b, m, t->values[r * ms->n + j]);
                if (b.len > (1u << 16))
                    flush_buf(&b, out);
            }
            if (rv_buf_putc(&b, '}') < 0)
                rv_die_lib();
        }
        if (rv_buf_putc(&b, '}') < 0)
            rv_die_lib();
    }
    if (rv_buf_printf(&b, "\n}\n") < 0)
        rv_die_lib();
    flush_buf(&b, out);
    rv_buf_free(&b);
}

static void warn_repeats(const rv_trec_run *run, const rv_qrels *qrels, const char *run_name, const char *qrels_name)
{
    rv_run_repeat rep;
    size_t n = rv_trec_run_n_repeats(run, &rep);
    if (n && rep.line)
        rv_warn("warning: %s:%zu: document %.*s is listed again for query %.*s; kept its highest score "
                "(%zu repeated document%s in all; trec_eval refuses such runs)",
                run_name, rep.line, (int)rep.docid_len, rep.docid, (int)rep.qid_len, rep.qid, n, n == 1 ? "" : "s");
    else if (n)
        rv_warn("warning: %s: document %.*s is listed again for query %.*s; kept its highest score "
                "(%zu repeated document%s in all; trec_eval refuses such runs)",
                run_name, (int)rep.docid_len, rep.docid, (int)rep.qid_len, rep.qid, n, n == 1 ? "" : "s");
    size_t line;
    n = rv_qrels_n_duplicates(qrels, &line);
    if (n)
        rv_warn("warning: %s:%zu: judges a (query, document) pair again; the last judgment counts "
                "(%zu repeated judgment%s in all)", qrels_name, line, n, n == 1 ? "" : "s");
}

int main(int argc, char **argv)
{
    rv_cli_init("rv-eval");
    enum { OPT_QRELS = 256, OPT_IGNORE_IDENTICAL };
    static const struct option opts[] = {
        {"qrels", required_argument, 0, OPT_QRELS},
        {"measure", required_argument, 0, 'm'},
        {"per-query", no_argument, 0, 'q'},
        {"complete", no_argument, 0, 'c'},
        {"relevance-level", required_argument, 0, 'l'},
        {"max-docs", required_argument, 0, 'M'},
        {"ignore-identical-ids", no_argument, 0, OPT_IGNORE_IDENTICAL},
        {"json", no_argument, 0, 'j'},
        {"digits", required_argument, 0, 'd'},
        {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    const char *qrels_path = NULL, *output = NULL;
    rv_measure_set ms = {0};
    rv_eval_options eo = {0, 0, 0, 1};
    int per_query = 0, json = 0, digits = 6, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:qcl:M:jd:o:hV", opts, NULL)) != -1) {
        switch (c) {
        case OPT_QRELS: qrels_path = optarg; break;
        case 'm':
            if (rv_measures_add(&ms, optarg) < 0)
                rv_die_usage("--measure: %s", rv_error_get());
            break;
        case 'q': per_query = 1; break;
        case 'c': eo.complete = 1; break;
        case 'l':
            eo.relevance_level = (int32_t)rv_parse_uint("--relevance-level", optarg, INT32_MAX);
            if (eo.relevance_level < 1)
                rv_die_usage("--relevance-level: expected an integer of at least 1, found \"%s\"", optarg);
            break;
        case 'M': eo.max_docs = rv_parse_uint("--max-docs", optarg, UINT64_MAX); break;
        case OPT_IGNORE_IDENTICAL: eo.ignore_identical_ids = 1; break;
        case 'j': json = 1; break;
        case 'd': digits = (int)rv_parse_uint("--digits", optarg, 17); break;
        case 'o': output = optarg; break;
        case 'h': usage();
        case 'V': rv_print_version();
        default: rv_die_bad_option(c, argv);
        }
    }
    if (!qrels_path)
        rv_die_usage("--qrels FILE is required");
    if (argc - optind > 1)
        rv_die_usage("expected at most one RUN, found %d", argc - optind);
    if (ms.n == 0 && rv_measures_add(&ms, "ndcg_cut.10") < 0)
        rv_die_lib();
    const char *run_path = optind < argc ? argv[optind] : "-";
    const char *run_name = strcmp(run_path, "-") == 0 ? "<stdin>" : run_path;
    const char *qrels_name = strcmp(qrels_path, "-") == 0 ? "<stdin>" : qrels_path;
    if (strcmp(run_path, "-") == 0 && strcmp(qrels_path, "-") == 0)
        rv_die_usage("the run and the qrels cannot both be standard input");

    FILE *qf = rv_open_input(qrels_path, 0);
    rv_qrels *qrels = rv_qrels_read(qf, qrels_name);
    if (!qrels)
        rv_die_lib();
    rv_close_input(qf);
    FILE *rf = rv_open_input(run_path, 0);
    rv_trec_run *run = rv_trec_run_read(rf, run_name);
    if (!run)
        rv_die_lib();
    rv_close_input(rf);
    warn_repeats(run, qrels, run_name, qrels_name);

    rv_eval_table t;
    if (rv_evaluate(run, qrels, &ms, &eo, &t) < 0)
        rv_die("%s: %s", run_name, rv_error_get());

    rv_output o;
    rv_output_open(&o, output, 0, 0);
    if (json)
        print_json(o.f, &ms, &t, per_query);
    else
        print_text(o.f, &ms, &t, per_query, digits);
    rv_output_commit(&o);

    rv_eval_table_free(&t);
    rv_trec_run_free(run);
    rv_qrels_free(qrels);
    rv_measures_free(&ms);
    return RV_EXIT_OK;
}
