/* rv-encode — embed documents, chunks or queries with a LLaMA-family model
 * (+ a PEFT LoRA adapter): EOS pooling and L2 normalisation by default, as
 * Revela/RepLLaMA evaluate. Wiring only: the model runtime is lib/model.c,
 * lib/forward.c, lib/lora.c; the text convention and batching live in
 * lib/forward_encode.c. With --device cuda the forward pass runs in the CUDA
 * backend (kernels/encode_gpu.cu, loaded by lib/cuda_loader.c); everything
 * else — loading, LoRA merge, tokenisation, output — is the same code.
 * --shard I/N keeps the records at input positions ≡ I (mod N), for array
 * jobs that each read the whole input. */
#include "cli.h"
#include "buf.h"
#include "cuda_loader.h"
#include "gpu_profile.h"
#include "forward.h"
#include "forward_encode.h"
#include "json.h"
#include "lines.h"
#include "lora.h"
#include "model.h"
#include "npy_write.h"
#include "ops.h"
#include "progress.h"
#include "records.h"
#include "stream.h"
#include "tokenizer.h"
#include "version.h"
#include "../kernels/encode_gpu.h"   /* the backend's entry points, called through pointers */

#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

_Noreturn static void usage(void)
{
    printf("Usage: rv-encode --model PATH [OPTION]... [INPUT]\n"
           "Embed documents, chunks or queries with a LLaMA-family decoder (LLaMA-3.x, Qwen2/2.5, SmolLM2).\n"
           "INPUT (default standard input) is BEIR corpus.jsonl / queries.jsonl (_id, title, text), or a doc\n"
           "or chunk stream. Writes an emb stream, one record per input, in input order.\n"
           "\n"
           "  -m, --model PATH        Hugging Face model directory or GGUF file (required)\n"
           "  -a, --adapter DIR       PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors),\n"
           "                          merged into the weights\n"
           "      --tokenizer PATH    tokenizer.json, directory or GGUF (default: the model's own)\n"
           "  -p, --prefix STR        prepended to each text, then the whole is stripped (mteb RepLLaMA\n"
           "                          evaluation uses \"query:  \" and \"passage:  \", two spaces)\n"
           "      --max-len N         tokens per text including the template and EOS (default 512)\n"
           "      --pooling MODE      eos (default: hidden state at the appended EOS) or mean\n"
           "      --no-normalize      keep the raw pooled vector (default: L2-normalised)\n"
           "      --eos-id N          token id appended as EOS (default: the model's eos token)\n"
           "      --dtype T           stored vector type: f32 (default), f16 or bf16\n"
           "      --npy FILE          also write the embeddings as a rows × dim .npy (f32, or f16 with --dtype f16)\n"
           "      --batch-tokens N    tokens per forward pass (default 4096)\n"
           "      --batch-size N      sequences per forward pass (default: no limit)\n"
           "      --window N          inputs read, sorted by length and encoded together (default 8192)\n"
           "      --threads N         BLAS and OpenMP threads (default: all cores)\n"
           "      --device D          cpu (default) or cuda: the forward pass on a GPU (the CUDA backend\n"
           "                          librevela-cuda.so, found next to the tool or at $RV_CUDA_LIB)\n"
           "      --gpu N             CUDA device index (default 0)\n"
           "      --gpu-dtype T       weights and activations on the GPU: bf16 (default; fp32 accumulation\n"
           "                          and residual stream) or f32 (matches the CPU path up to rounding)\n"
           "      --gpu-profile       device time per operation and matrix product over the run, on stderr\n"
           "      --shard I/N         encode only the inputs at positions I, I+N, I+2N, ... (0-based, I < N):\n"
           "                          N jobs over the same INPUT together write every record once\n"
           "  -o, --output FILE       write FILE (atomically, via FILE.part) instead of standard output\n"
           "  -f, --force             write the binary stream even when standard output is a terminal\n"
           "  -q, --quiet             no progress or summary on standard error\n"
           "  -h, --help              show this help and exit\n"
           "  -V, --version           show the version and exit\n"
           "\n"
           "Exit status: 0 success, 1 bad data, model or I/O error, 2 usage error.\n"
           "Example:\n"
           "  rv-encode -m \"$(scripts/get-model.sh)\" -p 'passage:  ' corpus.jsonl > corpus.emb\n");
    exit(RV_EXIT_OK);
}

/* ------------------------------------------------------------------ input */

typedef struct {
    FILE *f;
    const char *name;
    rv_stream_reader *sr;
    int chunks;                 /* stream of kind chunk */
    rv_lines lines;
    rv_json_parser *jp;
} input;

static void input_open(input *in, const char *path)
{
    memset(in, 0, sizeof *in);
    in->name = path && strcmp(path, "-") != 0 ? path : "<stdin>";
    in->f = rv_open_input(path, 0);
    int c = getc(in->f);
    if (c != EOF)
        ungetc(c, in->f);
    if (c == 0x28) {   /* zstd frame magic 28 B5 2F FD: a revela stream (JSON never starts so) */
        in->sr = rv_stream_reader_open(in->f, path);
        if (!in->sr)
            rv_die_lib();
        const char *kind = rv_stream_reader_kind(in->sr);
        if (strcmp(kind, "chunk") == 0) {
            in->chunks = 1;
            if (rv_stream_reader_expect(in->sr, "chunk", RV_CHUNK_VERSION) < 0)
                rv_die_lib();
        } else if (rv_stream_reader_expect(in->sr, "doc", RV_DOC_VERSION) < 0)
            rv_die("%s: expected a doc or chunk stream, found kind \"%s\"", in->name, kind);
    } else {
        rv_lines_init(&in->lines, in->f);
        in->jp = rv_json_parser_new();
        if (!in->jp)
            rv_die_lib();
    }
}

static void input_close(input *in)
{
    if (in->sr)
        rv_stream_reader_close(in->sr);
    else {
        rv_lines_free(&in->lines);
        rv_json_parser_free(in->jp);
    }
    rv_close_input(in->f);
}

static int json_str(const rv_json *o, const char *key, rv_str *out, int required, const input *in)
{
    const rv_json *v = rv_json_get(o, key);
    if (!v) {
        if (required)
            rv_die("%s:%zu: %s: expected a string, found nothing", in->name, in->lines.lineno, key);
        return 0;
    }
    if (v->type != RV_JSON_STRING)
        rv_die("%s:%zu: %s: expected a string, found %s", in->name, in->lines.lineno, key, rv_json_type_name(v->type));
    out->p = v->u.string;
    out->len = v->len;
    return 1;
}

/* Next input as id and body text (BEIR: title + " " + text when a title
 * field exists, as mteb's corpus_to_texts does; the strip comes later).
 * Returns 0 at the end. */
static int input_next(input *in, rv_buf *id, rv_buf *text)
{
    id->len = text->len = 0;
    if (in->sr) {
        const unsigned char *rec;
        size_t len;
        int rc = rv_stream_read(in->sr, &rec, &len);
        if (rc < 0)
            rv_die_lib();
        if (rc == 0)
            return 0;
        if (in->chunks) {
            rv_chunk c;
            if (rv_chunk_decode(rec, len, &c) < 0)
                rv_die("%s: record %llu: %s", in->name, (unsigned long long)rv_stream_reader_count(in->sr) - 1,
                       rv_error_get());
            if (rv_buf_append(id, c.doc_id.p, c.doc_id.len) < 0 || rv_buf_printf(id, "#%u", c.index) < 0 ||
                rv_buf_append(text, c.text.p, c.text.len) < 0)
                rv_die_lib();
        } else {
            rv_doc d;
            if (rv_doc_decode(rec, len, &d) < 0)
                rv_die("%s: record %llu: %s", in->name, (unsigned long long)rv_stream_reader_count(in->sr) - 1,
                       rv_error_get());
            if (rv_buf_append(id, d.id.p, d.id.len) < 0 || rv_buf_append(text, d.title.p, d.title.len) < 0 ||
                rv_buf_putc(text, ' ') < 0 || rv_buf_append(text, d.text.p, d.text.len) < 0)
                rv_die_lib();
        }
        return 1;
    }
    char *line;
    size_t len;
    int rc;
    while ((rc = rv_lines_next(&in->lines, &line, &len)) == 1) {
        size_t j = 0;
        while (j < len && (line[j] == ' ' || line[j] == '\t'))
            j++;
        if (j < len)
            break;   /* blank lines are skipped */
    }
    if (rc < 0)
        rv_die("%s: %s", in->name, rv_error_get());
    if (rc == 0)
        return 0;
    const rv_json *o = rv_json_parse(in->jp, line, len);
    if (!o)
        rv_die("%s:%zu: %s", in->name, in->lines.lineno, rv_error_get());
    if (o->type != RV_JSON_OBJECT)
        rv_die("%s:%zu: expected a JSON object, found %s", in->name, in->lines.lineno, rv_json_type_name(o->type));
    rv_str s_id, s_title, s_text;
    if (!json_str(o, "_id", &s_id, 0, in))
        json_str(o, "id", &s_id, 1, in);
    json_str(o, "text", &s_text, 1, in);
    if (rv_buf_append(id, s_id.p, s_id.len) < 0)
        rv_die_lib();
    if (json_str(o, "title", &s_title, 0, in) &&
        (rv_buf_append(text, s_title.p, s_title.len) < 0 || rv_buf_putc(text, ' ') < 0))
        rv_die_lib();
    if (rv_buf_append(text, s_text.p, s_text.len) < 0)
        rv_die_lib();
    return 1;
}

/* Non-blank lines of a regular JSONL file, for the ETA; 0 when unknown. */
static uint64_t count_inputs(const char *path)
{
    struct stat sb;
    if (!path || strcmp(path, "-") == 0 || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int c = getc(f), prev = '\n', blank = 1;
    uint64_t n = 0;
    if (c == 0x28) {
        fclose(f);
        return 0;
    }
    for (; c != EOF; prev = c, c = getc(f)) {
        if (c == '\n') {
            n += !blank;
            blank = 1;
        } else if (c != ' ' && c != '\t' && c != '\r')
            blank = 0;
    }
    if (prev != '\n' && !blank)
        n++;
    fclose(f);
    return n;
}

/* ------------------------------------------------------------------- main */

typedef struct {
    rv_progress *p;
    uint64_t base;
} progress_ctx;

static void on_progress(void *ctx, size_t done)
{
    progress_ctx *pc = ctx;
    rv_progress_update(pc->p, pc->base + done);
}

enum {
    OPT_TOKENIZER = 256, OPT_MAX_LEN, OPT_POOLING, OPT_NO_NORM, OPT_EOS, OPT_DTYPE, OPT_NPY, OPT_BATCH_TOKENS,
    OPT_BATCH_SIZE, OPT_WINDOW, OPT_THREADS, OPT_DEVICE, OPT_GPU, OPT_GPU_DTYPE, OPT_SHARD,
    OPT_GPU_PROFILE
};

/* "I/N" with 0 <= I < N; usage error otherwise. */
static void parse_shard(const char *s, uint64_t *index, uint64_t *count)
{
    const char *slash = strchr(s, '/');
    char num[32];
    if (!slash || (size_t)(slash - s) >= sizeof num)
        rv_die_usage("--shard: expected I/N (e.g. 0/4), found \"%s\"", s);
    memcpy(num, s, (size_t)(slash - s));
    num[slash - s] = 0;
    *index = rv_parse_uint("--shard index", num, UINT32_MAX);
    *count = rv_parse_uint("--shard count", slash + 1, UINT32_MAX);
    if (*count == 0 || *index >= *count)
        rv_die_usage("--shard %s: expected 0 <= I < N", s);
}

/* The CUDA backend's entry points (encode_gpu.h), looked up by name. */
typedef struct {
    rv_encode_gpu_open_fn *open;
    rv_encode_gpu_device_name_fn *device_name;
    rv_encode_gpu_weight_bytes_fn *weight_bytes;
    rv_encode_gpu_sequences_fn *sequences;
    rv_encode_gpu_close_fn *close;
} gpu_api;

static void gpu_api_load(gpu_api *a)
{
    if (!(a->open = (rv_encode_gpu_open_fn *)rv_cuda_backend_sym("rv_encode_gpu_open")) ||
        !(a->device_name = (rv_encode_gpu_device_name_fn *)rv_cuda_backend_sym("rv_encode_gpu_device_name")) ||
        !(a->weight_bytes = (rv_encode_gpu_weight_bytes_fn *)rv_cuda_backend_sym("rv_encode_gpu_weight_bytes")) ||
        !(a->sequences = (rv_encode_gpu_sequences_fn *)rv_cuda_backend_sym("rv_encode_gpu_sequences")) ||
        !(a->close = (rv_encode_gpu_close_fn *)rv_cuda_backend_sym("rv_encode_gpu_close")))
        rv_die("--device cuda: %s", rv_error_get());
}

int main(int argc, char **argv)
{
    rv_cli_keep_heap();
    rv_cli_init("rv-encode");
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},        {"adapter", required_argument, 0, 'a'},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER}, {"prefix", required_argument, 0, 'p'},
        {"max-len", required_argument, 0, OPT_MAX_LEN}, {"pooling", required_argument, 0, OPT_POOLING},
        {"no-normalize", no_argument, 0, OPT_NO_NORM}, {"eos-id", required_argument, 0, OPT_EOS},
        {"dtype", required_argument, 0, OPT_DTYPE},  {"npy", required_argument, 0, OPT_NPY},
        {"batch-tokens", required_argument, 0, OPT_BATCH_TOKENS},
        {"batch-size", required_argument, 0, OPT_BATCH_SIZE}, {"window", required_argument, 0, OPT_WINDOW},
        {"threads", required_argument, 0, OPT_THREADS}, {"output", required_argument, 0, 'o'},
        {"device", required_argument, 0, OPT_DEVICE}, {"gpu", required_argument, 0, OPT_GPU},
        {"gpu-dtype", required_argument, 0, OPT_GPU_DTYPE}, {"shard", required_argument, 0, OPT_SHARD},
        {"gpu-profile", no_argument, 0, OPT_GPU_PROFILE},
        {"force", no_argument, 0, 'f'},              {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},               {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    const char *model_path = NULL, *adapter = NULL, *tok_path = NULL, *prefix = "", *npy_path = NULL,
               *output = NULL;
    size_t max_len = 512, window = 8192;
    long long eos_opt = -1;
    int normalize = 1, force = 0, quiet = 0, threads = 0, c;
    rv_pooling pooling = RV_POOL_EOS;
    rv_dtype dtype = RV_DTYPE_F32;
    rv_encode_params ep = {4096, 0, RV_POOL_EOS, 1};
    int use_cuda = 0, gpu = 0, gpu_opts = 0, gpu_profile = 0;
    rv_wtype gpu_dtype = RV_WT_BF16;
    uint64_t shard_i = 0, shard_n = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:a:p:o:fqhV", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'a': adapter = optarg; break;
        case OPT_TOKENIZER: tok_path = optarg; break;
        case 'p': prefix = optarg; break;
        case OPT_MAX_LEN: max_len = rv_parse_uint("--max-len", optarg, 1u << 20); break;
        case OPT_POOLING:
            if (strcmp(optarg, "eos") == 0) pooling = RV_POOL_EOS;
            else if (strcmp(optarg, "mean") == 0) pooling = RV_POOL_MEAN;
            else rv_die_usage("--pooling: expected eos or mean, found \"%s\"", optarg);
            break;
        case OPT_NO_NORM: normalize = 0; break;
        case OPT_EOS: eos_opt = (long long)rv_parse_uint("--eos-id", optarg, UINT32_MAX - 1); break;
        case OPT_DTYPE:
            if (rv_dtype_parse(optarg, &dtype) < 0)
                rv_die_usage("--dtype: expected f32, f16 or bf16, found \"%s\"", optarg);
            break;
        case OPT_NPY: npy_path = optarg; break;
        case OPT_BATCH_TOKENS: ep.batch_tokens = rv_parse_uint("--batch-tokens", optarg, 1u << 24); break;
        case OPT_BATCH_SIZE: ep.batch_size = rv_parse_uint("--batch-size", optarg, 1u << 24); break;
        case OPT_WINDOW: window = rv_parse_uint("--window", optarg, 1u << 24); break;
        case OPT_THREADS: threads = (int)rv_parse_uint("--threads", optarg, 4096); break;
        case OPT_DEVICE:
            if (strcmp(optarg, "cpu") == 0) use_cuda = 0;
            else if (strcmp(optarg, "cuda") == 0) use_cuda = 1;
            else rv_die_usage("--device: expected cpu or cuda, found \"%s\"", optarg);
            break;
        case OPT_GPU: gpu = (int)rv_parse_uint("--gpu", optarg, 1023); gpu_opts = 1; break;
        case OPT_GPU_DTYPE:
            if (strcmp(optarg, "bf16") == 0) gpu_dtype = RV_WT_BF16;
            else if (strcmp(optarg, "f32") == 0) gpu_dtype = RV_WT_F32;
            else rv_die_usage("--gpu-dtype: expected bf16 or f32, found \"%s\"", optarg);
            gpu_opts = 1;
            break;
        case OPT_SHARD: parse_shard(optarg, &shard_i, &shard_n); break;
        case OPT_GPU_PROFILE: gpu_profile = 1; gpu_opts = 1; break;
        case 'o': output = optarg; break;
        case 'f': force = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage();
        case 'V': rv_print_version();
        default: rv_die_bad_option(c, argv);
        }
    }
    if (!model_path)
        rv_die_usage("--model PATH is required");
    if (argc - optind > 1)
        rv_die_usage("expected at most one INPUT, found %d", argc - optind);
    if (max_len < 2)
        rv_die_usage("--max-len: expected at least 2 (text and EOS)");
    if (window == 0 || ep.batch_tokens == 0)
        rv_die_usage("--window and --batch-tokens must be positive");
    if (npy_path && dtype == RV_DTYPE_BF16)
        rv_die_usage("--npy: .npy has no bf16 type; use --dtype f32 or f16");
    if (gpu_opts && !use_cuda)
        rv_die_usage("--gpu, --gpu-dtype and --gpu-profile need --device cuda");
    const char *in_path = optind < argc ? argv[optind] : NULL;
    ep.pooling = pooling;
    ep.normalize = normalize;
    rv_ops_set_threads(threads);

    gpu_api gapi = {0};
    if (use_cuda)
        gpu_api_load(&gapi);   /* a missing backend fails before the model is read */
    double t0 = rv_now();
    rv_model *m = rv_model_load(model_path);
    if (!m)
        rv_die_lib();
    rv_lora_info lora = {0};
    if (adapter && rv_lora_merge(m, adapter, &lora) < 0)
        rv_die_lib();
    if (!tok_path)
        tok_path = model_path;
    rv_tokenizer *tok = rv_tokenizer_load(tok_path);
    if (!tok)
        rv_die_lib();
    uint32_t eos;
    if (eos_opt >= 0)
        eos = (uint32_t)eos_opt;
    else if (m->cfg.eos_id >= 0)
        eos = (uint32_t)m->cfg.eos_id;
    else if (rv_tokenizer_eos_id(tok) != RV_TOKEN_NONE)
        eos = rv_tokenizer_eos_id(tok);
    else
        rv_die("%s: the model declares no EOS token; give one with --eos-id", model_path);
    if (eos >= m->cfg.vocab_size)
        rv_die("--eos-id %u is outside the vocabulary (%u)", eos, m->cfg.vocab_size);
    if (rv_tokenizer_n_ids(tok) > m->cfg.vocab_size)
        rv_die("%s: tokenizer has %u ids but the model's vocabulary is %u (wrong tokenizer?)", tok_path,
               rv_tokenizer_n_ids(tok), m->cfg.vocab_size);
    size_t D = m->cfg.hidden_size;

    rv_buf meta = {0};
    rv_buf_printf(&meta, "{\"producer\":\"rv-encode %s\",\"dim\":%zu,\"dtype\":\"%s\",\"model\":", RV_VERSION, D,
                  rv_dtype_name(dtype));
    rv_json_put_string(&meta, model_path, strlen(model_path));
    rv_buf_printf(&meta, ",\"arch\":\"%s\",\"adapter\":", rv_arch_name(m->cfg.arch));
    if (adapter) {
        rv_json_put_string(&meta, adapter, strlen(adapter));
        rv_buf_printf(&meta, ",\"lora_r\":%u,\"lora_alpha\":%g,\"lora_scale\":%g", lora.r, lora.alpha, lora.scale);
    } else
        rv_buf_printf(&meta, "null");
    rv_buf_printf(&meta, ",\"tokenizer\":");
    rv_json_put_string(&meta, tok_path, strlen(tok_path));
    rv_buf_printf(&meta, ",\"tokenizer_hash\":\"%016llx\",\"prefix\":",
                  (unsigned long long)rv_tokenizer_file_hash(tok));
    rv_json_put_string(&meta, prefix, strlen(prefix));
    rv_buf_printf(&meta, ",\"strip\":true,\"pooling\":\"%s\",\"normalized\":%s,\"max_len\":%zu,\"eos_id\":%u",
                  pooling == RV_POOL_EOS ? "eos" : "mean", normalize ? "true" : "false", max_len, eos);
    /* only what changes the vectors or the record set is added, and only when
     * not the default, so CPU output stays as it was */
    if (use_cuda)
        rv_buf_printf(&meta, ",\"device\":\"cuda\",\"gpu_dtype\":\"%s\"", rv_wtype_name(gpu_dtype));
    if (shard_n > 1)
        rv_buf_printf(&meta, ",\"shard\":\"%llu/%llu\"", (unsigned long long)shard_i, (unsigned long long)shard_n);
    if (rv_buf_putc(&meta, '}') < 0 || rv_buf_putc(&meta, 0) < 0)
        rv_die_lib();

    rv_encode_gpu *gdev = NULL;
    char dev_desc[400] = "cpu";
    if (use_cuda) {
        double tg = rv_now();
        if (!(gdev = gapi.open(m, gpu, gpu_dtype)))
            rv_die("--device cuda: %s", rv_error_get());
        snprintf(dev_desc, sizeof dev_desc, "cuda:%d %s, %s weights %.1f MiB (uploaded in %.1fs)", gpu,
                 gapi.device_name(gdev), rv_wtype_name(gpu_dtype), (double)gapi.weight_bytes(gdev) / (1 << 20),
                 rv_now() - tg);
    }
    rv_gpu_profile prof = {0};   /* --gpu-profile: the whole run, its first batch (plans, buffers) included */
    if (gpu_profile) {
        rv_encode_gpu_context_fn *context = (rv_encode_gpu_context_fn *)rv_cuda_backend_sym("rv_encode_gpu_context");
        rv_gpu_profile_open(&prof, context ? context(gdev) : NULL, "--gpu-profile");
        rv_gpu_profile_start(&prof);
    }
    if (!quiet)
        fprintf(stderr, "rv-encode: model %s (%s, %u layers, dim %zu%s), adapter %s, prefix \"%s\", pooling %s, "
                        "max-len %zu, eos %u, batch-tokens %zu, threads %d (loaded in %.1fs), device %s\n",
                model_path, rv_arch_name(m->cfg.arch), m->cfg.n_layers, D, m->format == RV_MODEL_GGUF ? ", GGUF" : "",
                adapter ? adapter : "none", prefix, pooling == RV_POOL_EOS ? "eos" : "mean", max_len, eos,
                ep.batch_tokens, threads ? threads : omp_get_max_threads(), rv_now() - t0, dev_desc);
    if (!quiet && shard_n > 1)
        fprintf(stderr, "rv-encode: shard %llu/%llu: inputs at positions %llu + k*%llu (0-based)\n",
                (unsigned long long)shard_i, (unsigned long long)shard_n, (unsigned long long)shard_i,
                (unsigned long long)shard_n);

    input in;
    input_open(&in, in_path);
    rv_output o;
    rv_output_open(&o, output, 1, force);
    rv_stream_writer *w = rv_stream_writer_open(o.f, output, "emb", RV_EMB_VERSION, (const char *)meta.data, 0);
    if (!w)
        rv_die_lib();
    rv_npy_writer *npy = NULL;
    if (npy_path && !(npy = rv_npy_writer_open(npy_path, D, dtype == RV_DTYPE_F16)))
        rv_die_lib();

    rv_forward *fw = use_cuda ? NULL : rv_forward_new(m);
    int n_thr = omp_get_max_threads();
    rv_tok_state **states = calloc((size_t)n_thr, sizeof *states);
    rv_buf *scratch = calloc((size_t)n_thr, sizeof *scratch);
    rv_buf *ids_of = calloc(window, sizeof *ids_of), *texts = calloc(window, sizeof *texts);
    rv_ids *seqs = calloc(window, sizeof *seqs);
    rv_buf idbuf = {0}, textbuf = {0}, rec = {0};
    size_t *off = malloc((window + 1) * sizeof *off);
    uint64_t *pos_of = malloc(window * sizeof *pos_of);   /* input position, for error messages */
    float *emb = malloc(window * D * sizeof(float));
    rv_ids all = {0};
    if ((!use_cuda && !fw) || !states || !scratch || !ids_of || !texts || !seqs || !off || !pos_of || !emb)
        rv_die("out of memory");
    for (int i = 0; i < n_thr; i++)
        if (!(states[i] = rv_tok_state_new(tok)))
            rv_die_lib();

    rv_progress prog;
    uint64_t n_expect = count_inputs(in_path);
    if (shard_n > 1)   /* positions shard_i, shard_i + N, ... below the count */
        n_expect = n_expect > shard_i ? (n_expect - shard_i + shard_n - 1) / shard_n : 0;
    rv_progress_start(&prog, "rv-encode", "docs", n_expect, quiet);
    uint64_t n_docs = 0, n_tokens = 0, in_pos = 0;
    double flops = 0, t_start = rv_now();
    for (;;) {
        size_t n = 0;
        while (n < window && input_next(&in, &idbuf, &textbuf)) {
            /* every record is read and checked in every shard, so all N jobs
             * agree on the positions and fail alike on bad input */
            if (in_pos++ % shard_n != shard_i)
                continue;
            pos_of[n] = in_pos;
            ids_of[n].len = texts[n].len = 0;
            if (rv_buf_append(&ids_of[n], idbuf.data, idbuf.len) < 0 ||
                rv_buf_append(&texts[n], textbuf.data, textbuf.len) < 0)
                rv_die_lib();
            n++;
        }
        if (n == 0)
            break;
        int failed = 0;
        char err[512] = "";
#pragma omp parallel for schedule(dynamic, 16)
        for (long long i = 0; i < (long long)n; i++) {
            int t = omp_get_thread_num();
            seqs[i].n = 0;
            if (rv_encode_tokenize(tok, states[t], prefix, (const char *)texts[i].data, texts[i].len, max_len, eos,
                                   &seqs[i], &scratch[t]) < 0) {
#pragma omp critical
                if (!failed) {
                    failed = 1;
                    snprintf(err, sizeof err, "input %llu: %s", (unsigned long long)pos_of[i],
                             rv_error_get());
                }
            }
        }
        if (failed)
            rv_die("%s: %s", in.name, err);
        all.n = 0;
        off[0] = 0;
        for (size_t i = 0; i < n; i++) {
            if (rv_ids_reserve(&all, seqs[i].n) < 0)
                rv_die_lib();
            memcpy(all.v + all.n, seqs[i].v, seqs[i].n * sizeof *all.v);
            all.n += seqs[i].n;
            off[i + 1] = all.n;
        }
        progress_ctx pc = {&prog, n_docs};
        if (use_cuda) {
            if (gapi.sequences(gdev, all.v, off, n, &ep, emb, on_progress, &pc, &flops) < 0)
                rv_die("--device cuda: %s", rv_error_get());
        } else if (rv_encode_sequences(fw, D, all.v, off, n, &ep, emb, on_progress, &pc, &flops) < 0)
            rv_die_lib();
        for (size_t i = 0; i < n; i++) {
            rec.len = 0;
            if (rv_emb_encode(&rec, (const char *)ids_of[i].data, ids_of[i].len, emb + i * D, (uint32_t)D, dtype) < 0 ||
                rv_stream_write(w, rec.data, rec.len) < 0)
                rv_die_lib();
        }
        if (npy && rv_npy_writer_rows(npy, emb, n) < 0)
            rv_die_lib();
        n_docs += n;
        n_tokens += all.n;
    }
    if (rv_stream_writer_finish(w) < 0)
        rv_die_lib();
    if (npy && rv_npy_writer_finish(npy) < 0)
        rv_die_lib();
    rv_output_commit(&o);
    double secs = rv_now() - t_start;
    rv_progress_finish(&prog);
    rv_gpu_profile_collect(&prof, 1, secs * 1000);
    if (!quiet)
        fprintf(stderr, "rv-encode: %llu texts, %llu tokens in %.2fs: %.0f tokens/s, %.1f GFLOP/s\n",
                (unsigned long long)n_docs, (unsigned long long)n_tokens, secs,
                secs > 0 ? (double)n_tokens / secs : 0, secs > 0 ? flops / secs / 1e9 : 0);
    rv_gpu_profile_print(&prof, "run", "the operations in stream order; shares of the run's wall time");

    rv_npy_writer_free(npy);
    rv_stream_writer_free(w);
    input_close(&in);
    for (int i = 0; i < n_thr; i++) {
        rv_tok_state_free(states[i]);
        rv_buf_free(&scratch[i]);
    }
    for (size_t i = 0; i < window; i++) {
        rv_buf_free(&ids_of[i]);
        rv_buf_free(&texts[i]);
        rv_ids_free(&seqs[i]);
    }
    free(states); free(scratch); free(ids_of); free(texts); free(seqs); free(off); free(pos_of); free(emb);
    rv_ids_free(&all);
    rv_buf_free(&idbuf); rv_buf_free(&textbuf); rv_buf_free(&rec); rv_buf_free(&meta);
    rv_forward_free(fw);
    if (gdev)
        gapi.close(gdev);
    rv_tokenizer_free(tok);
    rv_model_free(m);
    return RV_EXIT_OK;
}
