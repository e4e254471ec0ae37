/* rv-train — Revela training on the CPU: LoRA adapters for a retriever and
 * a language model learned jointly from groups of chunks (in-batch
 * attention weighted by retriever similarities). Wiring only: the step is
 * lib/revela_step_ref.c (with --device cuda kernels/revela_step_gpu.cu, the
 * same step on the CUDA backend, loaded at run time), the model and adapters lib/train_model.c, the data
 * lib/train_data.c, checkpoints lib/checkpoint.c, PEFT output
 * lib/peft_write.c, full models lib/model_write.c. */
#include "cli.h"
#include "adamw.h"
#include "atomic_file.h"
#include "buf.h"
#include "checkpoint.h"
#include "comm.h"
#include "comm_tcp.h"
#include "cuda_loader.h"
#include "error.h"
#include "gpu_profile.h"
#include "ir_text.h"
#include "json.h"
#include "launch_env.h"
#include "lr_schedule.h"
#include "model.h"
#include "model_config.h"
#include "model_write.h"
#include "ops.h"
#include "peft_write.h"
#include "progress.h"
#include "revela_step_ref.h"
#include "spawn_ranks.h"
#include "tokenizer.h"
#include "train_data.h"
#include "train_model.h"
#include "version.h"
#include "../kernels/comm_nccl.h"        /* the backend's entry points, called through pointers */
#include "../kernels/cuda_ops.h"
#include "../kernels/revela_step_gpu.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Noreturn static void usage(void)
{
    printf("Usage: rv-train --model PATH --out DIR (--groups FILE | --from-jsonl FILE) [OPTION]...\n"
           "Train LoRA adapters of a retriever and a language model by the Revela method (CPU or CUDA),\n"
           "or a plain causal LM (--objective lm: LoRA, or every parameter with --full).\n"
           "\n"
           "  -m, --model PATH          retriever base model (Hugging Face directory or .gguf)\n"
           "      --lm PATH             language model (default: the --model checkpoint)\n"
           "      --tokenizer PATH      retriever tokenizer (default: --model)\n"
           "      --lm-tokenizer PATH   LM tokenizer (default: --lm)\n"
           "  -o, --out DIR             output: retriever/, lm/ (PEFT adapters), checkpoint/, log.jsonl\n"
           "  -g, --groups FILE         group stream from rv-bm25group (- for standard input)\n"
           "      --from-jsonl FILE     Revela batch file: a JSON list of chunk texts per line\n"
           "      --lora-rank N         LoRA rank r (default 256)\n"
           "      --lora-alpha X        LoRA alpha; scale alpha/r (default 64)\n"
           "      --lora-dropout P      dropout on the LoRA branch inputs (default 0.1)\n"
           "      --lora-targets LIST   projections (default q,k,v,o,gate,up,down)\n"
           "      --tau X               similarity temperature (default 1e-4)\n"
           "      --no-v-norm           do not V-normalise in-batch attention values\n"
           "      --first-half on|off   query view = first half of \"query: \"+chunk (default on)\n"
           "      --sim-precision P     fp32 or bf16 (the reference's bf16 W) (default fp32)\n"
           "      --max-len N           tokens per view, EOS included (default 157)\n"
           "      --lr X                peak learning rate (default 1e-4)\n"
           "      --warmup N            warm-up steps (default 100)\n"
           "      --warmup-shape S      log or linear (default log)\n"
           "      --weight-decay X      AdamW weight decay (default 0)\n"
           "      --grad-accum N        micro-batches (groups) per optimizer step (default 8)\n"
           "      --max-steps N         optimizer steps (default: epochs x groups / grad-accum)\n"
           "      --epochs N            passes over the groups when --max-steps is not given (default 1)\n"
           "      --stop-after N        stop once N steps are done, schedule unchanged (resume later)\n"
           "      --seed N              adapter init, shuffling (default 42)\n"
           "      --save-every N        checkpoint every N steps (default 500; 0: only at the end)\n"
           "      --resume              continue from DIR/checkpoint\n"
           "      --freeze-lm           train only the retriever adapters\n"
           "      --dual-loss           add the LM's own loss without in-batch attention (pass A)\n"
           "      --objective O         revela, or lm: plain next-token training of --lm (default revela)\n"
           "      --full                with --objective lm: train every parameter, write DIR/model/\n"
           "      --init CONFIG.json    with --objective lm: start from random weights of this shape\n"
           "                            (implies --full; needs --tokenizer FILE.json)\n"
           "      --recompute           keep only layer inputs, re-run each layer before its backward\n"
           "                            (same results, far less memory, about 1/3 more compute)\n"
           "      --device D            cpu (default) or cuda: the Revela step on a GPU (the CUDA backend,\n"
           "                            librevela-cuda.so; not with --objective lm)\n"
           "      --gpu N               CUDA device index (default 0; with several ranks: LOCAL_RANK)\n"
           "      --gpu-dtype T         f32 (default) or bf16: storage of the frozen matrices on the GPU\n"
           "      --gpu-profile         device time per operation and matrix product from the second\n"
           "                            step on, to DIR/gpu_profile.tsv, DIR/gpu_gemm_profile.tsv (and stderr)\n"
           "      --gpus N              data parallel on N GPUs of this node: one rank per GPU, the step's\n"
           "                            groups split between them (other launchers: see rv-train(1))\n"
           "      --comm C              gradient all-reduce between ranks: nccl (default with cuda) or tcp\n"
           "                            (through the host; the only one with --device cpu)\n"
           "  -t, --threads N           BLAS/OpenMP threads (default: all)\n"
           "  -q, --quiet               no progress lines\n"
           "  -h, --help                show this help and exit\n"
           "  -V, --version             show the version and exit\n"
           "\n"
           "Exit status: 0 success, 1 bad data or I/O error, 2 usage error.\n"
           "Example:\n"
           "  rv-train --model smollm2.gguf --groups groups.rvs --out run1 --lora-rank 8 --max-steps 10\n");
    exit(RV_EXIT_OK);
}

enum {
    OPT_LM = 256, OPT_TOK, OPT_LMTOK, OPT_JSONL, OPT_RANK, OPT_ALPHA, OPT_DROPOUT, OPT_TARGETS, OPT_TAU,
    OPT_NO_VNORM, OPT_FIRST_HALF, OPT_SIM, OPT_MAXLEN, OPT_LR, OPT_WARMUP, OPT_WSHAPE, OPT_WD, OPT_ACCUM,
    OPT_MAXSTEPS, OPT_EPOCHS, OPT_STOP, OPT_SEED, OPT_SAVE, OPT_RESUME, OPT_FREEZE, OPT_DUAL, OPT_OBJECTIVE,
    OPT_FULL, OPT_INIT, OPT_RECOMPUTE, OPT_DEVICE, OPT_GPU, OPT_GPU_DTYPE, OPT_GPUS, OPT_COMM, OPT_GPU_PROFILE
};

typedef struct {
    const char *model, *lm, *tok, *lm_tok, *out, *groups, *jsonl, *targets, *init;
    long rank, warmup, grad_accum, max_steps, epochs, stop_after, save_every;
    double alpha, dropout, tau, lr, weight_decay;
    int v_norm, first_half, resume, freeze_lm, threads, quiet, dual_loss, lm_only, full, recompute;
    int cuda, gpu, gpu_set;   /* --device cuda, --gpu N (or --gpu-dtype) given */
    int gpu_index_set;        /* --gpu N given */
    int gpus;                 /* --gpus N (0: not given) */
    int comm_tcp, comm_set;   /* --comm tcp; --comm given */
    int gpu_profile;          /* --gpu-profile */
    rv_wtype gpu_dtype;
    rv_sim_numerics sim;
    rv_warmup_type warmup_shape;
    size_t max_len;
    uint64_t seed;
} train_opts;

static void put_str(rv_buf *b, const char *key, const char *v)
{
    rv_buf_printf(b, ",\"%s\":", key);
    if (v)
        rv_json_put_string(b, v, strlen(v));
    else
        rv_buf_printf(b, "null");
}

/* Every effective hyper-parameter as one JSON object (stop-after, threads,
 * recompute and the device excluded: they do not change the result beyond
 * rounding, and a run may be resumed on another device; bf16 weights on the
 * GPU do, and are recorded). */
static char *hparams_json(const train_opts *o, long total_steps, size_t n_groups)
{
    rv_buf b = {0};
    rv_buf_printf(&b, "{\"producer\":\"rv-train %s\"", RV_VERSION);
    put_str(&b, "model", o->model);
    put_str(&b, "lm", o->lm);
    put_str(&b, "tokenizer", o->tok);
    put_str(&b, "lm_tokenizer", o->lm_tok);
    put_str(&b, "data", o->groups ? o->groups : o->jsonl);
    put_str(&b, "lora_targets", o->targets);
    rv_buf_printf(&b, ",\"n_groups\":%zu,\"lora_rank\":%ld,\"lora_alpha\":%.17g,\"lora_dropout\":%.17g,"
                      "\"tau\":%.17g,\"v_norm\":%s,\"v_norm_eps\":1e-06,"
                      "\"first_half\":%s,\"sim_precision\":\"%s\",\"skip_zero_weights\":true,\"max_len\":%zu,"
                      "\"lr\":%.17g,\"min_lr\":0,\"warmup\":%ld,\"warmup_shape\":\"%s\",\"weight_decay\":%.17g,"
                      "\"adam_betas\":[0.9,0.999],\"adam_eps\":1e-08,\"clip_norm\":1.0,\"grad_accum\":%ld,"
                      "\"total_steps\":%ld,\"epochs\":%ld,\"seed\":%" PRIu64 ",\"save_every\":%ld,"
                      "\"freeze_lm\":%s,\"dual_loss\":%s,\"objective\":\"%s\",\"full\":%s",
                  n_groups, o->rank, o->alpha, o->dropout, o->tau, o->v_norm ? "true" : "false",
                  o->first_half ? "true" : "false", o->sim == RV_SIM_BF16 ? "bf16" : "fp32", o->max_len, o->lr,
                  o->warmup, o->warmup_shape == RV_WARMUP_LOG ? "log" : "linear", o->weight_decay, o->grad_accum,
                  total_steps, o->epochs, o->seed, o->save_every, o->freeze_lm ? "true" : "false",
                  o->dual_loss ? "true" : "false", o->lm_only ? "lm" : "revela", o->full ? "true" : "false");
    put_str(&b, "init", o->init);
    if (o->cuda && o->gpu_dtype == RV_WT_BF16)   /* changes the numbers beyond rounding; f32 runs match the CPU's */
        rv_buf_printf(&b, ",\"gpu_weights\":\"bf16\"");
    rv_buf_printf(&b, "}");
    if (!b.data)
        rv_die("out of memory");
    return (char *)b.data;
}

static void parse_args(int argc, char **argv, train_opts *o)
{
    *o = (train_opts){.targets = "q,k,v,o,gate,up,down", .rank = 256, .warmup = 100, .grad_accum = 8,
                      .max_steps = -1, .epochs = 1, .stop_after = -1, .save_every = 500, .alpha = 64,
                      .dropout = 0.1, .tau = 1e-4, .lr = 1e-4, .v_norm = 1, .first_half = 1, .sim = RV_SIM_FP32,
                      .warmup_shape = RV_WARMUP_LOG, .max_len = 157, .seed = 42, .gpu_dtype = RV_WT_F32};
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"lm", required_argument, 0, OPT_LM},
        {"tokenizer", required_argument, 0, OPT_TOK}, {"lm-tokenizer", required_argument, 0, OPT_LMTOK},
        {"out", required_argument, 0, 'o'}, {"groups", required_argument, 0, 'g'},
        {"from-jsonl", required_argument, 0, OPT_JSONL}, {"lora-rank", required_argument, 0, OPT_RANK},
        {"lora-alpha", required_argument, 0, OPT_ALPHA}, {"lora-dropout", required_argument, 0, OPT_DROPOUT},
        {"lora-targets", required_argument, 0, OPT_TARGETS}, {"tau", required_argument, 0, OPT_TAU},
        {"no-v-norm", no_argument, 0, OPT_NO_VNORM}, {"first-half", required_argument, 0, OPT_FIRST_HALF},
        {"sim-precision", required_argument, 0, OPT_SIM}, {"max-len", required_argument, 0, OPT_MAXLEN},
        {"lr", required_argument, 0, OPT_LR}, {"warmup", required_argument, 0, OPT_WARMUP},
        {"warmup-shape", required_argument, 0, OPT_WSHAPE}, {"weight-decay", required_argument, 0, OPT_WD},
        {"grad-accum", required_argument, 0, OPT_ACCUM}, {"max-steps", required_argument, 0, OPT_MAXSTEPS},
        {"epochs", required_argument, 0, OPT_EPOCHS}, {"stop-after", required_argument, 0, OPT_STOP},
        {"seed", required_argument, 0, OPT_SEED}, {"save-every", required_argument, 0, OPT_SAVE},
        {"resume", no_argument, 0, OPT_RESUME}, {"freeze-lm", no_argument, 0, OPT_FREEZE},
        {"dual-loss", no_argument, 0, OPT_DUAL}, {"objective", required_argument, 0, OPT_OBJECTIVE},
        {"full", no_argument, 0, OPT_FULL}, {"init", required_argument, 0, OPT_INIT},
        {"recompute", no_argument, 0, OPT_RECOMPUTE}, {"device", required_argument, 0, OPT_DEVICE},
        {"gpu", required_argument, 0, OPT_GPU}, {"gpu-dtype", required_argument, 0, OPT_GPU_DTYPE},
        {"gpus", required_argument, 0, OPT_GPUS}, {"comm", required_argument, 0, OPT_COMM},
        {"gpu-profile", no_argument, 0, OPT_GPU_PROFILE},
        {"threads", required_argument, 0, 't'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:o:g:t:qhV", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case OPT_LM: o->lm = optarg; break;
        case OPT_TOK: o->tok = optarg; break;
        case OPT_LMTOK: o->lm_tok = optarg; break;
        case 'o': o->out = optarg; break;
        case 'g': o->groups = optarg; break;
        case OPT_JSONL: o->jsonl = optarg; break;
        case OPT_RANK: o->rank = (long)rv_parse_uint("--lora-rank", optarg, 65536); break;
        case OPT_ALPHA: o->alpha = rv_parse_double("--lora-alpha", optarg); break;
        case OPT_DROPOUT: o->dropout = rv_parse_double("--lora-dropout", optarg); break;
        case OPT_TARGETS: o->targets = optarg; break;
        case OPT_TAU: o->tau = rv_parse_double("--tau", optarg); break;
        case OPT_NO_VNORM: o->v_norm = 0; break;
        case OPT_FIRST_HALF:
            if (strcmp(optarg, "on") == 0) o->first_half = 1;
            else if (strcmp(optarg, "off") == 0) o->first_half = 0;
            else rv_die_usage("--first-half: expected on or off, found \"%s\"", optarg);
            break;
        case OPT_SIM:
            if (strcmp(optarg, "fp32") == 0) o->sim = RV_SIM_FP32;
            else if (strcmp(optarg, "bf16") == 0) o->sim = RV_SIM_BF16;
            else rv_die_usage("--sim-precision: expected fp32 or bf16, found \"%s\"", optarg);
            break;
        case OPT_MAXLEN: o->max_len = (size_t)rv_parse_uint("--max-len", optarg, 1u << 20); break;
        case OPT_LR: o->lr = rv_parse_double("--lr", optarg); break;
        case OPT_WARMUP: o->warmup = (long)rv_parse_uint("--warmup", optarg, 1ull << 40); break;
        case OPT_WSHAPE:
            if (strcmp(optarg, "log") == 0) o->warmup_shape = RV_WARMUP_LOG;
            else if (strcmp(optarg, "linear") == 0) o->warmup_shape = RV_WARMUP_LINEAR;
            else rv_die_usage("--warmup-shape: expected log or linear, found \"%s\"", optarg);
            break;
        case OPT_WD: o->weight_decay = rv_parse_double("--weight-decay", optarg); break;
        case OPT_ACCUM: o->grad_accum = (long)rv_parse_uint("--grad-accum", optarg, 1u << 20); break;
        case OPT_MAXSTEPS: o->max_steps = (long)rv_parse_uint("--max-steps", optarg, 1ull << 40); break;
        case OPT_EPOCHS: o->epochs = (long)rv_parse_uint("--epochs", optarg, 1u << 20); break;
        case OPT_STOP: o->stop_after = (long)rv_parse_uint("--stop-after", optarg, 1ull << 40); break;
        case OPT_SEED: o->seed = rv_parse_uint("--seed", optarg, UINT64_MAX); break;
        case OPT_SAVE: o->save_every = (long)rv_parse_uint("--save-every", optarg, 1ull << 40); break;
        case OPT_RESUME: o->resume = 1; break;
        case OPT_FREEZE: o->freeze_lm = 1; break;
        case OPT_DUAL: o->dual_loss = 1; break;
        case OPT_OBJECTIVE:
            if (strcmp(optarg, "revela") == 0) o->lm_only = 0;
            else if (strcmp(optarg, "lm") == 0) o->lm_only = 1;
            else rv_die_usage("--objective: expected revela or lm, found \"%s\"", optarg);
            break;
        case OPT_FULL: o->full = 1; break;
        case OPT_INIT: o->init = optarg; o->full = 1; break;
        case OPT_RECOMPUTE: o->recompute = 1; break;
        case OPT_DEVICE:
            if (strcmp(optarg, "cpu") == 0) o->cuda = 0;
            else if (strcmp(optarg, "cuda") == 0) o->cuda = 1;
            else rv_die_usage("--device: expected cpu or cuda, found \"%s\"", optarg);
            break;
        case OPT_GPU: o->gpu = (int)rv_parse_uint("--gpu", optarg, 1023); o->gpu_set = o->gpu_index_set = 1; break;
        case OPT_GPUS:
            if ((o->gpus = (int)rv_parse_uint("--gpus", optarg, 1024)) < 1)
                rv_die_usage("--gpus: expected at least 1");
            break;
        case OPT_COMM:
            if (strcmp(optarg, "nccl") == 0) o->comm_tcp = 0;
            else if (strcmp(optarg, "tcp") == 0) o->comm_tcp = 1;
            else rv_die_usage("--comm: expected nccl or tcp, found \"%s\"", optarg);
            o->comm_set = 1;
            break;
        case OPT_GPU_DTYPE:
            if (strcmp(optarg, "f32") == 0) o->gpu_dtype = RV_WT_F32;
            else if (strcmp(optarg, "bf16") == 0) o->gpu_dtype = RV_WT_BF16;
            else rv_die_usage("--gpu-dtype: expected f32 or bf16, found \"%s\"", optarg);
            o->gpu_set = 1;
            break;
        case OPT_GPU_PROFILE:
            o->gpu_profile = 1;
            o->gpu_set = 1;
            break;
        case 't': o->threads = (int)rv_parse_uint("--threads", optarg, 4096); break;
        case 'q': o->quiet = 1; break;
        case 'h': usage();
        case 'V': rv_print_version();
        default: rv_die_bad_option(c, argv);
        }
    }
    if (optind < argc)
        rv_die_usage("unexpected argument \"%s\"", argv[optind]);
    if (o->full && !o->lm_only)
        rv_die_usage("--full and --init need --objective lm (Revela training uses LoRA adapters)");
    if (o->gpu_set && !o->cuda)
        rv_die_usage("--gpu, --gpu-dtype and --gpu-profile need --device cuda");
    if (o->gpus && !o->cuda)
        rv_die_usage("--gpus needs --device cuda (data parallel on CPUs: start the ranks with a launcher, "
                     "see rv-train(1))");
    if (o->gpus > 1 && o->gpu_index_set)
        rv_die_usage("--gpus uses devices 0..N-1 (select them with CUDA_VISIBLE_DEVICES), not --gpu");
    if (o->comm_set && !o->comm_tcp && !o->cuda)
        rv_die_usage("--comm nccl needs --device cuda");
    if (!o->cuda)
        o->comm_tcp = 1;
    if (o->cuda && o->lm_only)
        rv_die_usage("--device cuda runs the Revela step only: not with --objective lm, --full or --init "
                     "(use --device cpu)");
    if (o->lm_only && (o->dual_loss || o->freeze_lm))
        rv_die_usage("--dual-loss and --freeze-lm apply to --objective revela only");
    if (o->init && !o->model && !o->tok)
        rv_die_usage("--init needs --tokenizer (the tokenizer.json of the new model)");
    if (o->init && o->model)
        rv_die_usage("give --model or --init, not both");
    if ((!o->model && !o->init) || !o->out)
        rv_die_usage("--model and --out are required");
    if (!o->groups == !o->jsonl)
        rv_die_usage("give exactly one of --groups and --from-jsonl");
    if (o->rank < 1 || o->grad_accum < 1 || o->epochs < 1 || o->max_steps == 0)
        rv_die_usage("--lora-rank, --grad-accum, --epochs and --max-steps must be positive");
    if (!(o->tau > 0) || !(o->lr >= 0) || !(o->dropout >= 0 && o->dropout < 1) || !(o->weight_decay >= 0) ||
        !isfinite(o->alpha))
        rv_die_usage("expected --tau > 0, --lr >= 0, 0 <= --lora-dropout < 1, --weight-decay >= 0");
    if (o->max_len < 3)
        rv_die_usage("--max-len must be at least 3");
    if (o->init)   /* the random model stands in for --model everywhere */
        o->model = o->init;
    if (!o->lm)
        o->lm = o->model;
    if (!o->tok)
        o->tok = o->model;
    if (!o->lm_tok)
        o->lm_tok = o->init ? o->tok : o->lm;
}

static uint32_t eos_of(const rv_model_config *c, const rv_tokenizer *t, const char *path)
{
    int64_t e = c->eos_id;
    if (e < 0 && rv_tokenizer_eos_id(t) != RV_TOKEN_NONE)
        e = (int64_t)rv_tokenizer_eos_id(t);
    if (e < 0 || e >= (int64_t)c->vocab_size)
        rv_die("%s: the model declares no usable EOS token", path);
    return (uint32_t)e;
}

static const char *crash_step;   /* RV_TRAIN_TEST_CRASH_AT: SIGKILL mid-checkpoint at that step */
static long saving_step;
static void crash_hook(void)
{
    if (crash_step && atol(crash_step) == saving_step)
        raise(SIGKILL);
}

/* The CUDA backend's step (revela_step_gpu.h), looked up by name. */
typedef struct {
    rv_step_gpu_open_fn *open;
    rv_step_gpu_device_name_fn *device_name;
    rv_step_gpu_step_fn *step;
    rv_step_gpu_take_grads_fn *take_grads;
    rv_step_gpu_load_lora_fn *load_lora;
    rv_step_gpu_close_fn *close;
    /* the optimiser on the device */
    rv_step_gpu_optim_upload_fn *optim_upload;
    rv_step_gpu_optim_step_fn *optim_step;
    rv_step_gpu_optim_download_fn *optim_download;
    rv_step_gpu_context_fn *context;   /* the backend context: NCCL, --gpu-profile, RV_GEMM_TUNE's report */
    /* data parallel over NCCL (looked up only when used) */
    rv_step_gpu_set_comm_fn *set_comm;
    rv_step_gpu_mark_final_fn *mark_final;
    rv_step_gpu_allreduce_host_fn *allreduce_host;
} gpu_api;

static void gpu_api_load(gpu_api *a)
{
    if (!(a->open = (rv_step_gpu_open_fn *)rv_cuda_backend_sym("rv_step_gpu_open")) ||
        !(a->device_name = (rv_step_gpu_device_name_fn *)rv_cuda_backend_sym("rv_step_gpu_device_name")) ||
        !(a->step = (rv_step_gpu_step_fn *)rv_cuda_backend_sym("rv_step_gpu_step")) ||
        !(a->take_grads = (rv_step_gpu_take_grads_fn *)rv_cuda_backend_sym("rv_step_gpu_take_grads")) ||
        !(a->load_lora = (rv_step_gpu_load_lora_fn *)rv_cuda_backend_sym("rv_step_gpu_load_lora")) ||
        !(a->close = (rv_step_gpu_close_fn *)rv_cuda_backend_sym("rv_step_gpu_close")) ||
        !(a->optim_upload = (rv_step_gpu_optim_upload_fn *)rv_cuda_backend_sym("rv_step_gpu_optim_upload")) ||
        !(a->optim_step = (rv_step_gpu_optim_step_fn *)rv_cuda_backend_sym("rv_step_gpu_optim_step")) ||
        !(a->optim_download = (rv_step_gpu_optim_download_fn *)rv_cuda_backend_sym("rv_step_gpu_optim_download")) ||
        !(a->context = (rv_step_gpu_context_fn *)rv_cuda_backend_sym("rv_step_gpu_context")))
        rv_die("--device cuda: %s", rv_error_get());
}

/* RV_GEMM_TUNE=1 (the backend's matmul.cu times cuBLASLt's candidates for
 * every product's plan): what the tuning did, at the end of the run. */
static void gpu_tune_report(const gpu_api *a, rv_step_gpu *g)
{
    const char *v = getenv("RV_GEMM_TUNE");
    if (!g || !v || strcmp(v, "1") != 0)
        return;
    void (*stats)(const rv_cuda *, rv_cuda_gemm_stats *) =
        (void (*)(const rv_cuda *, rv_cuda_gemm_stats *))rv_cuda_backend_sym("rv_cuda_gemm_get_stats");
    if (!stats)
        return;
    rv_cuda_gemm_stats st;
    stats(a->context(g), &st);
    fprintf(stderr, "rv-train: RV_GEMM_TUNE=1: %llu of %llu matrix-product plans tuned, %llu of them chose another "
                    "algorithm than cuBLASLt's first; %llu tunings failed\n",
            st.plans_tuned, st.plans_built, st.tune_changed, st.tune_failed);
}

/* ---------------------------------------------------------------- data parallelism
 * One process per rank (lib/grad_buckets.h tells the whole scheme): every
 * rank walks the one global data order, computes the step's groups
 * k = rank, rank + world, ... of its grad_accum, the ranks sum their
 * gradients (and the step's statistics), and each runs the same clipping
 * and AdamW on the same sum, so the parameters stay identical without being
 * sent. Only rank 0 writes files. World 1 is the plain path: no
 * communicator, nothing summed. */
typedef struct {
    rv_launch_env env;
    int rank, world;
    rv_comm *comm;           /* NULL at world 1 */
    int on_device;           /* NCCL: the step's backend sums its device gradients itself */
    double timeout;          /* seconds a rank waits for the others (RV_COMM_TIMEOUT) */
    unsigned char nccl_id[RV_NCCL_ID_BYTES];
    char name[64];           /* "rv-train[rank 1/4]" for messages */
} dp_state;

/* Before anything heavy: --gpus N starts the ranks (and this process only
 * waits for them); a rank learns where it sits, gets its name, device and
 * share of the CPUs, and meets the others (TCP: the communicator itself;
 * NCCL: rank 0's id, the communicator follows once the device is open). */
static void dp_begin(train_opts *o, dp_state *dp, char **argv)
{
    memset(dp, 0, sizeof *dp);
    if (rv_launch_env_read(&dp->env, NULL, NULL) < 0)
        rv_die("%s", rv_error_get());
    const int spawned = rv_spawned_by() != 0;
    if (o->gpus > 1 && !spawned) {
        if (dp->env.world_size > 1)
            rv_die_usage("--gpus starts its own ranks: leave it out under a launcher (%s set %d ranks)",
                         dp->env.source, dp->env.world_size);
        if (o->groups && strcmp(o->groups, "-") == 0)
            rv_die_usage("--gpus: every rank reads the groups itself; give a file, not standard input");
        if (mkdir(o->out, 0777) != 0 && errno != EEXIST)
            rv_die("%s: cannot create: %s", o->out, strerror(errno));
        char rdv[4200];
        snprintf(rdv, sizeof rdv, "%s/.rendezvous-%ld", o->out, (long)getpid());
        int failed = -1, st = rv_spawn_ranks(o->gpus, argv, rdv, &failed);
        unlink(rdv);   /* rank 0 removes it once all have joined; not when a rank failed before */
        if (st < 0)
            rv_die_lib();
        if (st > 0) {
            rv_warn("%s", rv_error_get());
            exit(st);
        }
        exit(RV_EXIT_OK);
    }
    dp->rank = dp->env.rank;
    dp->world = dp->env.world_size;
    if (o->gpus > 1 && dp->world != o->gpus)
        rv_die("--gpus %d, but this rank was started as one of %d (%s)", o->gpus, dp->world, dp->env.source);
    if (dp->world == 1)
        return;
    snprintf(dp->name, sizeof dp->name, "rv-train[rank %d/%d]", dp->rank, dp->world);
    rv_cli_init(dp->name);
    if (o->groups && strcmp(o->groups, "-") == 0)
        rv_die_usage("%d ranks: every rank reads the groups itself; give a file, not standard input", dp->world);
    if (o->cuda) {
        if (o->gpu_index_set && !o->gpus)
            rv_die_usage("%d ranks: each uses the device of its LOCAL_RANK (select them with CUDA_VISIBLE_DEVICES), "
                         "not --gpu", dp->world);
        o->gpu = dp->env.local_rank;
    }
    if (dp->rank > 0)
        o->quiet = 1;   /* one progress display: rank 0's */
    if (!o->threads && dp->env.local_world_size > 1) {   /* share this node's CPUs */
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = ncpu > dp->env.local_world_size ? (int)(ncpu / dp->env.local_world_size) : 1;
    }
    const char *t = getenv("RV_COMM_TIMEOUT");
    dp->timeout = t && atof(t) > 0 ? atof(t) : 1800.0;
    if (o->comm_tcp) {
        if (!(dp->comm = rv_comm_tcp_open(&dp->env, dp->timeout)))
            rv_die("%s", rv_error_get());
        if (dp->rank == 0 && dp->env.rendezvous == RV_RDV_FILE)
            rv_rendezvous_file_remove(dp->env.path);
        return;
    }
    rv_comm_nccl_unique_id_fn new_id = (rv_comm_nccl_unique_id_fn)rv_cuda_backend_sym("rv_comm_nccl_unique_id");
    if (!new_id)
        rv_die("--comm nccl: %s", rv_error_get());
    if (dp->rank == 0 && new_id(dp->nccl_id, sizeof dp->nccl_id) < 0)
        rv_die("--comm nccl: %s (--comm tcp sums the gradients through the host instead)", rv_error_get());
    if (rv_rendezvous(&dp->env, dp->nccl_id, sizeof dp->nccl_id, dp->timeout) < 0)
        rv_die("%s", rv_error_get());
}

/* NCCL: the communicator on the step's device, handed to the step. */
static void dp_attach_device(dp_state *dp, gpu_api *a, rv_step_gpu *g)
{
    if (dp->world == 1 || dp->comm)
        return;
    rv_comm_nccl_open_fn open = (rv_comm_nccl_open_fn)rv_cuda_backend_sym("rv_comm_nccl_open");
    if (!open || !(a->set_comm = (rv_step_gpu_set_comm_fn *)rv_cuda_backend_sym("rv_step_gpu_set_comm")) ||
        !(a->mark_final = (rv_step_gpu_mark_final_fn *)rv_cuda_backend_sym("rv_step_gpu_mark_final")) ||
        !(a->allreduce_host = (rv_step_gpu_allreduce_host_fn *)rv_cuda_backend_sym("rv_step_gpu_allreduce_host")))
        rv_die("--comm nccl: %s", rv_error_get());
    if (!(dp->comm = open(a->context(g), dp->rank, dp->world, dp->nccl_id, sizeof dp->nccl_id)) ||
        a->set_comm(g, dp->comm) < 0)
        rv_die("--comm nccl: %s", rv_error_get());
    if (dp->rank == 0 && dp->env.rendezvous == RV_RDV_FILE)   /* every rank has joined */
        rv_rendezvous_file_remove(dp->env.path);
    dp->on_device = 1;
}

/* Sums n host floats over the ranks (in place). */
static void dp_sum_host(dp_state *dp, gpu_api *a, rv_step_gpu *g, float *x, size_t n, const char *what)
{
    if (dp->world == 1 || n == 0)
        return;
    int rc = dp->on_device ? a->allreduce_host(g, x, n) : rv_comm_allreduce_sum(dp->comm, x, n);
    if (rc < 0)
        rv_die("all-reduce of the %s: %s", what, rv_error_get());
}

/* Every rank waits here until rank 0 has written what it writes. */
static void dp_barrier(dp_state *dp, const char *what)
{
    if (dp->world > 1 && dp->comm->barrier(dp->comm) < 0)
        rv_die("waiting for rank 0 to write the %s: %s", what, rv_error_get());
}

/* Where a full-parameter run copies config.json and tokenizer.json from
 * (checked before training starts, so a long run cannot fail at the end). */
static void full_sources(const train_opts *o, char *config, char *tokenizer, size_t size)
{
    struct stat st;
    if (o->init)
        snprintf(config, size, "%s", o->init);
    else if (stat(o->lm, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(config, size, "%s/config.json", o->lm);
    else
        rv_die_usage("--full writes a Hugging Face model directory and copies its config.json: --lm/--model must "
                     "be a Hugging Face directory, not \"%s\" (or start from --init CONFIG.json)", o->lm);
    if (stat(o->lm_tok, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(tokenizer, size, "%s/tokenizer.json", o->lm_tok);
    else
        snprintf(tokenizer, size, "%s", o->lm_tok);
    size_t n = strlen(tokenizer);
    if (n < 5 || strcmp(tokenizer + n - 5, ".json") != 0 || stat(tokenizer, &st) != 0)
        rv_die_usage("--full copies tokenizer.json into the new model: \"%s\" is not a tokenizer.json (a GGUF's "
                     "embedded tokenizer cannot be copied; give --tokenizer FILE.json)", tokenizer);
    if (stat(config, &st) != 0)
        rv_die("%s: %s", config, strerror(errno));
}

static void write_outputs(const train_opts *o, const rv_train_net *r, const rv_train_net *l, const char *hp)
{
    char path[4096];
    if (l->full) {
        char config[4096], tokenizer[4096];
        full_sources(o, config, tokenizer, sizeof config);
        snprintf(path, sizeof path, "%s/model", o->out);
        if (rv_model_dir_write(path, l, config, tokenizer, hp) < 0)
            rv_die_lib();
        return;
    }
    rv_peft_opts po = {o->lm, o->dropout, 1, hp};
    snprintf(path, sizeof path, "%s/lm", o->out);
    if (rv_peft_write(path, l, &po) < 0)
        rv_die_lib();
    if (!r)
        return;
    po = (rv_peft_opts){o->model, o->dropout, 0, hp};
    snprintf(path, sizeof path, "%s/retriever", o->out);
    if (rv_peft_write(path, r, &po) < 0)
        rv_die_lib();
}

/* --init: the config's shapes with random weights (transformers'
 * initializer_range when the config has one, else 0.02). */
static void random_base(const train_opts *o, rv_model_config *cfg, rv_train_base *b)
{
    FILE *f = fopen(o->init, "rb");
    rv_buf text = {0};
    if (!f || rv_read_whole(f, o->init, &text) < 0)
        rv_die("%s: %s", o->init, f ? rv_error_get() : strerror(errno));
    fclose(f);
    if (rv_model_config_parse_json((const char *)text.data, text.len, o->init, cfg) < 0 ||
        rv_model_config_validate(cfg, o->init) < 0)
        rv_die_lib();
    double std = 0.02;
    rv_json_parser *jp = rv_json_parser_new();
    const rv_json *root = jp ? rv_json_parse(jp, (const char *)text.data, text.len) : NULL;
    const rv_json *ir = root ? rv_json_get(root, "initializer_range") : NULL;
    if (ir && ir->type == RV_JSON_NUMBER && ir->u.number > 0)
        std = ir->u.number;
    rv_json_parser_free(jp);
    rv_buf_free(&text);
    if (rv_train_base_init_random(b, cfg, std, o->seed) < 0)
        rv_die_lib();
}

/* The optimiser step on the host: the gradients' mean over the step's
 * groups, clipped to norm 1, then AdamW (the LM's adapters stay as they are
 * with --freeze-lm). Returns the norm before clipping. */
static double host_update(const train_opts *o, rv_train_net *rnp, rv_train_net *lnet, const rv_adamw_hparams *ah,
                          long t)
{
    const float inv = (float)(1.0 / (double)o->grad_accum);
    if (rnp)
        rv_scale(rnp->n_params, rnp->grads, inv);
    rv_scale(lnet->n_params, lnet->grads, inv);
    double ss = rnp ? rv_sum_squares(rnp->n_params, rnp->grads) : 0.0;
    if (!o->freeze_lm)
        ss += rv_sum_squares(lnet->n_params, lnet->grads);
    const double norm = sqrt(ss), clip = rv_clip_factor(norm, 1.0);
    if (clip != 1.0) {
        if (rnp)
            rv_scale(rnp->n_params, rnp->grads, (float)clip);
        rv_scale(lnet->n_params, lnet->grads, (float)clip);
    }
    if ((rnp && rv_adamw_update(rnp->n_params, rnp->params, rnp->grads, rnp->adam_m, rnp->adam_v, t, ah) < 0) ||
        (!o->freeze_lm &&
         rv_adamw_update(lnet->n_params, lnet->params, lnet->grads, lnet->adam_m, lnet->adam_v, t, ah) < 0))
        rv_die_lib();
    return norm;
}

/* Keeps only log lines of steps <= step (a resumed run rewrites the rest). */
static void truncate_log(const char *path, long step)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    rv_buf keep = {0};
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "\"step\":");
        if (s && atol(s + 7) <= step)
            rv_buf_append(&keep, line, strlen(line));
    }
    fclose(f);
    f = fopen(path, "wb");
    if (!f || (keep.len && fwrite(keep.data, 1, keep.len, f) != keep.len) || fclose(f) != 0)
        rv_die("%s: cannot rewrite: %s", path, strerror(errno));
    rv_buf_free(&keep);
}

int main(int argc, char **argv)
{
    rv_cli_keep_heap();
    rv_cli_init("rv-train");
    train_opts o;
    parse_args(argc, argv, &o);
    dp_state dp;
    dp_begin(&o, &dp, argv);
    rv_proj_mask targets;
    if (rv_proj_mask_parse(o.targets, &targets) < 0)
        rv_die_usage("%s", rv_error_get());
    rv_ops_set_threads(o.threads);
    crash_step = getenv("RV_TRAIN_TEST_CRASH_AT");

    /* data */
    rv_train_data data = {0};
    const char *dname = o.groups ? o.groups : o.jsonl;
    FILE *in = rv_open_input(dname, o.groups != NULL);
    if ((o.groups ? rv_train_data_load_stream(&data, in, dname) : rv_train_data_load_jsonl(&data, in, dname)) < 0)
        rv_die_lib();
    rv_close_input(in);
    if (data.n == 0)
        rv_die("%s: no group with at least 2 chunks", dname);

    /* models: the LM (and the retriever unless --objective lm); --init builds the LM */
    rv_model *rm = NULL, *lmm = NULL;
    rv_model_config init_cfg;
    const rv_model_config *rcfg = NULL, *lcfg = NULL;
    rv_train_base rbase, lbase_own, *lbase = &rbase;
    if (o.init) {
        random_base(&o, &init_cfg, &rbase);
        rcfg = lcfg = &init_cfg;
    } else {
        if (!(lmm = rv_model_load(o.lm)))
            rv_die_lib();
        rm = lmm;
        if (!o.lm_only && strcmp(o.lm, o.model) != 0 && !(rm = rv_model_load(o.model)))
            rv_die_lib();
        rcfg = &rm->cfg;
        lcfg = &lmm->cfg;
        if (rv_train_base_init(&rbase, rm) < 0)
            rv_die_lib();
        if (lmm != rm) {
            if (rv_train_base_init(&lbase_own, lmm) < 0)
                rv_die_lib();
            lbase = &lbase_own;
        }
    }
    if (o.full) {   /* fail now rather than after training */
        char c1[4096], c2[4096];
        full_sources(&o, c1, c2, sizeof c1);
    }
    rv_tokenizer *ltok = rv_tokenizer_load(o.lm_tok), *rtok = ltok;
    if (!ltok || (!o.lm_only && strcmp(o.lm_tok, o.tok) != 0 && !(rtok = rv_tokenizer_load(o.tok))))
        rv_die_lib();
    if (rv_tokenizer_n_ids(rtok) > rcfg->vocab_size || rv_tokenizer_n_ids(ltok) > lcfg->vocab_size)
        rv_die("tokenizer id space larger than the model vocabulary (wrong tokenizer?)");
    rv_train_net rnet, lnet;
    rv_train_net *rnp = o.lm_only ? NULL : &rnet;
    if ((rnp && rv_train_net_init(&rnet, &rbase, (int)o.rank, o.alpha, targets, o.seed, 1, 0) < 0) ||
        (o.full ? rv_train_net_init_full(&lnet, lbase)
                : rv_train_net_init(&lnet, lbase, (int)o.rank, o.alpha, targets, o.seed, 2, 1)) < 0)
        rv_die_lib();
    rv_view_ctx vc = {rtok, ltok, rv_tok_state_new(rtok), rv_tok_state_new(ltok), eos_of(rcfg, rtok, o.tok),
                      eos_of(lcfg, ltok, o.lm_tok), o.max_len, o.first_half};
    if (!vc.rstate || !vc.lstate)
        rv_die("out of memory");
    /* memory held outside the step: fp32 weights, trainable parameters with gradients and AdamW moments */
    size_t weight_bytes = rv_train_base_n_floats(&rbase) * sizeof(float);
    if (lbase != &rbase)
        weight_bytes += rv_train_base_n_floats(lbase) * sizeof(float);
    /* per trainable parameter: the value, its gradient and AdamW's two moments */
    size_t train_bytes = 4 * sizeof(float) * (lnet.n_params + (rnp ? rnet.n_params : 0));

    long total = o.max_steps > 0 ? o.max_steps
                                 : (long)((o.epochs * (long)data.n + o.grad_accum - 1) / o.grad_accum);
    char *hp = hparams_json(&o, total, data.n);
    const int writer = dp.rank == 0;   /* only rank 0 writes files */
    const int made_out = mkdir(o.out, 0777) == 0;
    if (!made_out && errno != EEXIST)
        rv_die("%s: cannot create: %s", o.out, strerror(errno));
    char log_path[4096], hp_path[4096], path[4096];
    snprintf(log_path, sizeof log_path, "%s/log.jsonl", o.out);
    snprintf(hp_path, sizeof hp_path, "%s/hparams.json", o.out);
    /* A fresh run's folder, log and hyper-parameters stay only once its first
     * step is logged: a run that fails before (a group too large for the
     * device, say) leaves nothing that looks like a run. */
    int start_pending = writer;
    if (writer && made_out)
        rv_cli_remove_on_exit(o.out);

    rv_ckpt_pos pos = {0};
    if (o.resume) {
        char *old_hp = NULL;
        int got = rv_checkpoint_load(o.out, rnp, &lnet, &pos, &old_hp);
        if (got < 0)
            rv_die_lib();
        if (got == 0)
            rv_die("%s: --resume: no checkpoint/ to resume from", o.out);
        if (strcmp(old_hp, hp) != 0)
            rv_die("%s/checkpoint: hyper-parameters differ from this run's:\n  saved: %s\n  now:   %s", o.out,
                   old_hp, hp);
        free(old_hp);
        if (writer)
            truncate_log(log_path, pos.step);
    } else {
        snprintf(path, sizeof path, "%s/checkpoint/state.safetensors", o.out);
        struct stat st;
        if (stat(path, &st) == 0)
            rv_die("%s already holds a checkpoint; use --resume or another --out", o.out);
        FILE *f = writer ? fopen(log_path, "wb") : NULL;
        if (writer && (!f || fclose(f) != 0))
            rv_die("%s: %s", log_path, strerror(errno));
        if (writer)
            rv_cli_remove_on_exit(log_path);
    }
    FILE *logf = writer ? fopen(log_path, "ab") : NULL;
    if (writer && !logf)
        rv_die("%s: %s", log_path, strerror(errno));
    if (writer && !o.resume)
        rv_cli_remove_on_exit(hp_path);
    FILE *hf = writer ? fopen(hp_path, "wb") : NULL;
    if (writer && (!hf || fprintf(hf, "%s\n", hp) < 0 || fclose(hf) != 0))
        rv_die("%s: %s", hp_path, strerror(errno));
    if (!o.quiet)
        fprintf(stderr, "rv-train: %s; %zu groups (%zu skipped with < 2 chunks); %zu retriever + %zu LM %s "
                        "parameters; steps %ld..%ld (stop after %ld)\nrv-train: memory: fp32 weights %.1f MiB, "
                        "trainable parameters + gradients + AdamW moments %.1f MiB\nrv-train: hyper-parameters %s\n",
                o.resume ? "resuming" : "starting", data.n, data.skipped, rnp ? rnet.n_params : 0, lnet.n_params,
                o.full ? "trainable" : "LoRA", pos.step + 1, total,
                o.stop_after > 0 && o.stop_after < total ? o.stop_after : total, weight_bytes / 1048576.0,
                train_bytes / 1048576.0, hp);
    if (!o.quiet && dp.world > 1)
        fprintf(stderr, "rv-train: data parallel: %d ranks (%s), gradients summed by %s; each step's %ld groups "
                        "split %ld..%ld per rank\n",
                dp.world, dp.env.source, dp.comm ? dp.comm->name : "nccl", o.grad_accum, o.grad_accum / dp.world,
                (o.grad_accum + dp.world - 1) / dp.world);

    /* --device cuda: the step's backend, with both networks' weights and the
     * current adapters (after --resume) uploaded once */
    gpu_api gapi = {0};
    rv_step_gpu *gdev = NULL;
    if (o.cuda) {
        gpu_api_load(&gapi);
        if (dp.world > 1) {
            /* LOCAL_RANK counts the node's ranks; a launcher that binds one GPU per rank
             * (srun --gpus-per-task 1) leaves each rank fewer devices than that */
            int (*count)(const char **) = (int (*)(const char **))rv_cuda_backend_sym("rv_cuda_device_count");
            const int n = count ? count(NULL) : 0;
            if (n > 0 && o.gpu >= n)
                o.gpu %= n;
        }
        double tg = rv_now();
        if (!(gdev = gapi.open(&rnet.dec, &lnet.dec, o.gpu, o.gpu_dtype)))
            rv_die("--device cuda: %s", rv_error_get());
        if (!o.quiet)
            fprintf(stderr, "rv-train: device cuda:%d %s (backend %s; %s weights uploaded in %.1fs)\n", o.gpu,
                    gapi.device_name(gdev), rv_cuda_backend_path(), rv_wtype_name(o.gpu_dtype), rv_now() - tg);
        dp_attach_device(&dp, &gapi, gdev);
    }
    /* --gpu-profile: the steps after the first (which builds the products' plans and
     * allocates the activations), saved after each so a run stopped early keeps them */
    rv_gpu_profile prof = {0};
    if (o.gpu_profile && writer)
        rv_gpu_profile_open(&prof, gapi.context(gdev), "--gpu-profile");
    /* The optimiser runs where the summed gradients are: on the device with
     * one rank or NCCL (the adapters and AdamW moments then live there and
     * come back only for checkpoints), on the host with --comm tcp. */
    const int optim_on_device = gdev && (dp.world == 1 || dp.on_device);
    if (optim_on_device && gapi.optim_upload(gdev, rnet.params, rnet.adam_m, rnet.adam_v, lnet.params, lnet.adam_m,
                                             lnet.adam_v) < 0)
        rv_die("--device cuda: %s", rv_error_get());

    rv_lr_schedule sched = {0.0, o.lr, o.warmup, total, o.warmup_shape};
    rv_adamw_hparams ah = {0, 0.9, 0.999, 1e-8, o.weight_decay};
    rv_step_opts so = {o.tau, o.v_norm, 1e-6f, o.sim, 1, o.dual_loss, o.recompute};
    size_t act_peak = 0;
    size_t *perm = malloc(data.n * sizeof *perm);
    if (!perm)
        rv_die("out of memory");
    rv_train_data_order(data.n, o.seed, pos.epoch, perm);
    rv_train_batch bt = {0};
    size_t max_b = 0;
    for (size_t i = 0; i < data.n; i++)
        max_b = data.groups[i].n > max_b ? data.groups[i].n : max_b;
    float *wbuf = malloc(max_b * max_b * sizeof *wbuf);
    if (!wbuf)
        rv_die("out of memory");
    long stop = o.stop_after > 0 && o.stop_after < total ? o.stop_after : total;
    const long start_step = pos.step;   /* (after --resume: where this run starts) */

    while (pos.step < stop) {
        double t0 = rv_now();
        if (rnp && !optim_on_device)   /* (on the device the host gradients are not used) */
            memset(rnet.grads, 0, rnet.n_params * sizeof *rnet.grads);
        if (!optim_on_device)
            memset(lnet.grads, 0, lnet.n_params * sizeof *lnet.grads);
        double loss = 0, loss_plain = 0, max_w = 0, ent_w = 0;
        size_t tokens = 0, rows = 0;
        /* this rank's groups of the step: k = rank, rank + world, ... (the last one ends the rank's backward) */
        const long last_k = o.grad_accum - 1 - ((o.grad_accum - 1 - dp.rank) % dp.world + dp.world) % dp.world;
        for (long k = 0; k < o.grad_accum; k++) {
            if (pos.pos == data.n) {
                pos.epoch++;
                pos.pos = 0;
                rv_train_data_order(data.n, o.seed, pos.epoch, perm);
            }
            if (k % dp.world != dp.rank) {   /* another rank's group: only the position moves */
                pos.pos++;
                pos.micro++;
                continue;
            }
            if (dp.on_device && k == last_k && gapi.mark_final(gdev) < 0)   /* all-reduce overlaps its backward */
                rv_die("--comm nccl: %s", rv_error_get());
            const rv_train_group *g = &data.groups[perm[pos.pos]];
            if (rv_train_batch_build(&vc, g, &bt) < 0)
                rv_die("%s: group %zu: %s", dname, perm[pos.pos] + 1, rv_error_get());
            rv_step_result res = {0};
            res.w = wbuf;
            rv_step_dropout drop = {(float)o.dropout, o.seed, pos.micro};
            int rc = gdev  ? gapi.step(gdev, &bt.b, &so, &drop, &res)
                     : rnp ? rv_revela_step_ref_dropout(&rnet.dec, &lnet.dec, &bt.b, &so, &drop, rnet.layer_grads,
                                                      lnet.layer_grads, &res)
                         : rv_lm_step(&lnet.dec, &bt.b, &drop, o.recompute, lnet.layer_grads, o.full ? &lnet.dec_grads : NULL,
                                      &res);
            if (rc < 0)
                rv_die("%s: group %zu: %s", dname, perm[pos.pos] + 1, rv_error_get());
            loss += res.loss;
            loss_plain += res.loss_plain;
            tokens += bt.n_tokens;
            act_peak = res.activation_bytes > act_peak ? res.activation_bytes : act_peak;
            const size_t B = rnp ? g->n : 0;   /* W statistics (none for a plain LM) */
            for (size_t i = 0; i < B; i++, rows++) {
                double m = 0, e = 0;
                for (size_t j = 0; j < B; j++) {
                    double w = wbuf[i * B + j];
                    m = w > m ? w : m;
                    e -= w > 0 ? w * log(w) : 0;
                }
                max_w += m;
                ent_w += e;
            }
            pos.pos++;
            pos.micro++;
        }
        const long t = pos.step + 1;
        ah.lr = rv_lr_for_update(&sched, t);
        double norm;
        if (optim_on_device) {   /* sum over the ranks (NCCL), scale, norm, clip and AdamW on the device */
            rv_step_gpu_optim op = {(float)(1.0 / (double)o.grad_accum), 1.0, !o.freeze_lm, rnp != NULL,
                                    !o.freeze_lm, ah, t};
            if (gapi.optim_step(gdev, &op, &norm) < 0)
                rv_die("--device cuda: %s", rv_error_get());
        } else {
            if (gdev && gapi.take_grads(gdev, rnet.layer_grads, lnet.layer_grads) < 0)   /* the micro-batches' sum */
                rv_die("--device cuda: %s", rv_error_get());
            if (dp.world > 1) {   /* the sum over the ranks, through the host */
                if (rnp)
                    dp_sum_host(&dp, &gapi, gdev, rnet.grads, rnet.n_params, "retriever gradients");
                dp_sum_host(&dp, &gapi, gdev, lnet.grads, lnet.n_params, "LM gradients");
            }
            norm = host_update(&o, rnp, &lnet, &ah, t);
            if (gdev && gapi.load_lora(gdev) < 0)   /* the updated adapters up for the next step */
                rv_die("--device cuda: %s", rv_error_get());
        }
        if (dp.world > 1) {
            /* the statistics travel as floats: the logged loss may differ from one rank's run in the 7th digit */
            float st[6] = {(float)loss, (float)loss_plain, (float)tokens, (float)max_w, (float)ent_w, (float)rows};
            dp_sum_host(&dp, &gapi, gdev, st, 6, "step statistics");
            loss = st[0], loss_plain = st[1], tokens = (size_t)st[2], max_w = st[3], ent_w = st[4];
            rows = (size_t)st[5];
        }
        const int first_step = pos.step == start_step;
        pos.step = t;
        const double secs = rv_now() - t0;
        if (first_step) {
            rv_gpu_profile_start(&prof);
        } else {
            rv_gpu_profile_collect(&prof, 1, secs * 1000);
            rv_gpu_profile_save(&prof, o.out);
        }
        loss /= (double)o.grad_accum;
        loss_plain /= (double)o.grad_accum;
        if (logf)
            fprintf(logf, "{\"step\":%ld,\"loss\":%.9g,\"loss_plain\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens_per_s\":%.1f,"
                      "\"ms_per_step\":%.1f,\"mean_max_w\":%.6g,\"w_entropy\":%.6g,\"activations_mb\":%.1f}\n",
                t, loss, loss_plain, ah.lr, norm, (double)tokens / secs, secs * 1000,
                rows ? max_w / (double)rows : 0.0, rows ? ent_w / (double)rows : 0.0, act_peak / 1048576.0);
        if (logf && fflush(logf) != 0)
            rv_die("%s: write error", log_path);
        if (start_pending) {   /* the run has begun: its files stay whatever happens next */
            rv_cli_keep(o.out);
            rv_cli_keep(log_path);
            rv_cli_keep(hp_path);
            start_pending = 0;
        }
        if (!o.quiet)
            fprintf(stderr, "rv-train: step %ld/%ld loss %.4f (plain LM %.4f) lr %.3g grad-norm %.3g %.0f ms/step %.0f tok/s\n",
                    t, total, loss, loss_plain, ah.lr, norm, secs * 1000, (double)tokens / secs);
        if ((o.save_every > 0 && t % o.save_every == 0) || t == stop) {
            saving_step = t;
            if (optim_on_device && writer &&   /* the adapters and moments back from the device */
                gapi.optim_download(gdev, rnet.params, rnet.adam_m, rnet.adam_v, lnet.params, lnet.adam_m,
                                    lnet.adam_v) < 0)
                rv_die("--device cuda: %s", rv_error_get());
            if (writer && rv_checkpoint_save(o.out, rnp, &lnet, &pos, hp, crash_hook) < 0)
                rv_die_lib();
            dp_barrier(&dp, "checkpoint");   /* no rank runs ahead of a checkpoint that then fails */
        }
    }
    if (logf && fclose(logf) != 0)
        rv_die("%s: write error", log_path);
    if (!o.quiet) {
        char where[8300];
        snprintf(where, sizeof where, "%s/gpu_profile.tsv and gpu_gemm_profile.tsv", o.out);
        rv_gpu_profile_print(&prof, "step", where);
    }
    if (writer)
        write_outputs(&o, rnp, &lnet, hp);
    snprintf(path, sizeof path, "%s/memory.json", o.out);
    rv_atomic_file mf;
    if (writer && (rv_atomic_open(&mf, path) < 0 ||
        fprintf(mf.f,
                "{\"weights_bytes\":%zu,\"trainable_bytes\":%zu,\"parameters_bytes\":%zu,\"gradients_bytes\":%zu,"
                "\"optimizer_bytes\":%zu,\"activations_peak_bytes\":%zu}\n",
                weight_bytes, train_bytes, train_bytes / 4, train_bytes / 4, train_bytes / 2, act_peak) < 0 ||
        rv_atomic_commit(&mf) < 0))
        rv_die("%s: %s", path, rv_error_get());
    dp_barrier(&dp, "adapters");   /* a launcher sees every rank finish only once the outputs exist */
    if (!o.quiet)
        fprintf(stderr, "rv-train: wrote %s/%s (step %ld); peak activations %.1f MiB\n", o.out,
                o.full ? "model" : rnp ? "retriever and lm" : "lm", pos.step, act_peak / 1048576.0);

    rv_comm_close(dp.comm);   /* before the device it may live on */
    if (!o.quiet)
        gpu_tune_report(&gapi, gdev);
    if (gdev)
        gapi.close(gdev);
    free(wbuf);
    free(perm);
    free(hp);
    rv_train_batch_free(&bt);
    rv_tok_state_free(vc.rstate);
    rv_tok_state_free(vc.lstate);
    if (rnp)
        rv_train_net_free(&rnet);
    rv_train_net_free(&lnet);
    if (lbase != &rbase)
        rv_train_base_free(lbase);
    rv_train_base_free(&rbase);
    if (ltok != rtok)
        rv_tokenizer_free(rtok);
    rv_tokenizer_free(ltok);
    if (lmm != rm && rm)
        rv_model_free(rm);
    if (lmm)
        rv_model_free(lmm);
    rv_train_data_free(&data);
    return RV_EXIT_OK;
}
