/* rv-cat — show any revela stream as JSONL, build streams from JSONL, and
 * describe streams (--info). Wiring only: formats live in lib/records.c. */
#include "cli.h"
#include "buf.h"
#include "json.h"
#include "lines.h"
#include "records.h"
#include "stream.h"
#include "version.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

_Noreturn static void usage(void)
{
    printf("Usage: rv-cat [OPTION]... [FILE]...\n"
           "Decode revela streams to JSON Lines, or encode JSON Lines into a stream.\n"
           "With no FILE, or when FILE is -, read standard input.\n"
           "\n"
           "  -e, --encode KIND   read JSONL and write a KIND stream (doc, chunk, group, emb, run)\n"
           "      --dtype T       with --encode emb: vector storage f32 (default), f16 or bf16\n"
           "  -i, --info          print kind, versions, record count and metadata of each FILE\n"
           "  -o, --output FILE   write FILE (atomically, via FILE.part) instead of standard output\n"
           "  -f, --force         write a binary stream even when standard output is a terminal\n"
           "  -l, --level N       zstd compression level for --encode (default 1, or $RV_ZSTD_LEVEL)\n"
           "  -h, --help          show this help and exit\n"
           "  -V, --version       show the version and exit\n"
           "\n"
           "Exit status: 0 success, 1 bad data or I/O error, 2 usage error.\n"
           "Formats: man rv-formats (formats/*.md). Example:\n"
           "  rv-cat --encode doc corpus.jsonl > corpus.rvs && rv-cat corpus.rvs | head -1\n");
    exit(RV_EXIT_OK);
}

static void decode_file(const char *path, FILE *out, rv_buf *line)
{
    FILE *in = rv_open_input(path, 1);
    rv_stream_reader *r = rv_stream_reader_open(in, path);
    if (!r)
        rv_die_lib();
    const rv_kind *k = rv_kind_find(rv_stream_reader_kind(r));
    if (!k)
        rv_die("%s: unknown stream kind \"%s\" (this build knows doc, chunk, group, emb, run)",
               rv_stream_reader_name(r), rv_stream_reader_kind(r));
    if (rv_stream_reader_expect(r, k->name, k->version) < 0)
        rv_die_lib();
    size_t ml;
    const char *meta = rv_stream_reader_meta(r, &ml);
    const unsigned char *rec;
    size_t len;
    int rc;
    while ((rc = rv_stream_read(r, &rec, &len)) == 1) {
        line->len = 0;
        if (k->to_json(rec, len, meta, ml, line) < 0)
            rv_die("%s: record %llu: %s", rv_stream_reader_name(r),
                   (unsigned long long)rv_stream_reader_count(r) - 1, rv_error_get());
        rv_buf_putc(line, '\n');
        if (fwrite(line->data, 1, line->len, out) != line->len)
            rv_die("<stdout>: write error");
    }
    if (rc < 0)
        rv_die_lib();
    rv_stream_reader_close(r);
    rv_close_input(in);
}

static void info_file(const char *path, FILE *out)
{
    FILE *in = rv_open_input(path, 1);
    rv_stream_reader *r = rv_stream_reader_open(in, path);
    if (!r)
        rv_die_lib();
    const unsigned char *rec;
    size_t len, ml;
    int rc;
    unsigned long long bytes = 0;
    while ((rc = rv_stream_read(r, &rec, &len)) == 1)
        bytes += len;
    if (rc < 0)
        rv_die_lib();
    const char *meta = rv_stream_reader_meta(r, &ml);
    fprintf(out, "file: %s\nkind: %s\nkind_version: %u\ncontainer_version: %u\nrecords: %llu\n"
                 "record_bytes: %llu\nmetadata: %s\n",
            rv_stream_reader_name(r), rv_stream_reader_kind(r), rv_stream_reader_kind_version(r),
            RV_STREAM_VERSION, (unsigned long long)rv_stream_reader_count(r), bytes, meta);
    rv_stream_reader_close(r);
    rv_close_input(in);
}

/* Opens the output stream; emb streams record the dimension learned from
 * the first record (0 when there was none) and the dtype. */
static rv_stream_writer *open_writer(const rv_kind *k, rv_output *o, const rv_emb_json_state *emb, int level)
{
    char meta[256];
    if (strcmp(k->name, "emb") == 0)
        snprintf(meta, sizeof meta, "{\"producer\":\"rv-cat %s\",\"dim\":%u,\"dtype\":\"%s\"}", RV_VERSION,
                 emb->dim, rv_dtype_name(emb->dtype));
    else
        snprintf(meta, sizeof meta, "{\"producer\":\"rv-cat %s\"}", RV_VERSION);
    rv_stream_writer *w = rv_stream_writer_open(o->f, o->path, k->name, k->version, meta, level);
    if (!w)
        rv_die_lib();
    return w;
}

/* JSONL lines of all inputs -> one stream. The writer is opened at the first
 * record for emb (its dimension comes from the data). */
static void encode_files(const rv_kind *k, char **paths, int n_paths, rv_output *o, rv_dtype dtype, int level)
{
    rv_json_parser *jp = rv_json_parser_new();
    rv_buf rec = {0};
    rv_emb_json_state emb = {0, dtype, 0};
    rv_stream_writer *w = NULL;
    for (int i = 0; i < (n_paths ? n_paths : 1); i++) {
        const char *path = n_paths ? paths[i] : "-";
        const char *shown = strcmp(path, "-") == 0 ? "<stdin>" : path;
        FILE *in = rv_open_input(path, 0);
        rv_lines lr;
        rv_lines_init(&lr, in);
        char *line;
        size_t len;
        int rc;
        while ((rc = rv_lines_next(&lr, &line, &len)) == 1) {
            size_t j = 0;
            while (j < len && (line[j] == ' ' || line[j] == '\t'))
                j++;
            if (j == len)
                continue; /* blank lines are allowed between records */
            rv_json *v = rv_json_parse(jp, line, len);
            if (!v)
                rv_die("%s:%zu: %s", shown, lr.lineno, rv_error_get());
            if (v->type != RV_JSON_OBJECT)
                rv_die("%s:%zu: expected a JSON object, found %s", shown, lr.lineno, rv_json_type_name(v->type));
            rec.len = 0;
            if (k->from_json(v, &emb, &rec) < 0)
                rv_die("%s:%zu: %s", shown, lr.lineno, rv_error_get());
            if (!w)
                w = open_writer(k, o, &emb, level);
            if (rv_stream_write(w, rec.data, rec.len) < 0)
                rv_die_lib();
        }
        if (rc < 0)
            rv_die("%s:%s", shown, rv_error_get());
        rv_lines_free(&lr);
        rv_close_input(in);
    }
    if (!w) /* no records: still a valid, empty stream (emb: dim 0) */
        w = open_writer(k, o, &emb, level);
    if (rv_stream_writer_finish(w) < 0)
        rv_die_lib();
    rv_stream_writer_free(w);
    rv_buf_free(&rec);
    rv_json_parser_free(jp);
}

int main(int argc, char **argv)
{
    rv_cli_init("rv-cat");
    static const struct option opts[] = {
        {"encode", required_argument, 0, 'e'}, {"dtype", required_argument, 0, 'd'},
        {"info", no_argument, 0, 'i'},         {"output", required_argument, 0, 'o'},
        {"force", no_argument, 0, 'f'},        {"level", required_argument, 0, 'l'},
        {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    const char *encode = NULL, *output = NULL, *dtype_name = NULL;
    int info = 0, force = 0, level = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":e:io:fl:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'e': encode = optarg; break;
        case 'd': dtype_name = optarg; break;
        case 'i': info = 1; break;
        case 'o': output = optarg; break;
        case 'f': force = 1; break;
        case 'l': level = (int)rv_parse_uint("--level", optarg, 22); break;
        case 'h': usage();
        case 'V': rv_print_version();
        default: rv_die_bad_option(c, argv);
        }
    }
    if (info && encode)
        rv_die_usage("--info and --encode cannot be combined");
    if (dtype_name && !encode)
        rv_die_usage("--dtype only applies to --encode emb");
    const rv_kind *k = NULL;
    rv_dtype dtype = RV_DTYPE_F32;
    if (encode) {
        k = rv_kind_find(encode);
        if (!k)
            rv_die_usage("--encode: unknown kind \"%s\" (expected doc, chunk, group, emb or run)", encode);
        if (dtype_name && strcmp(k->name, "emb") != 0)
            rv_die_usage("--dtype only applies to --encode emb");
        if (dtype_name && rv_dtype_parse(dtype_name, &dtype) < 0)
            rv_die_usage("--%s", rv_error_get());
    }
    int n_files = argc - optind;
    char **files = argv + optind;
    rv_output o;
    rv_output_open(&o, output, encode != NULL, force);
    if (encode) {
        encode_files(k, files, n_files, &o, dtype, level);
    } else {
        rv_buf line = {0};
        for (int i = 0; i < (n_files ? n_files : 1); i++) {
            if (info)
                info_file(n_files ? files[i] : "-", o.f);
            else
                decode_file(n_files ? files[i] : "-", o.f, &line);
        }
        rv_buf_free(&line);
    }
    rv_output_commit(&o);
    return RV_EXIT_OK;
}
