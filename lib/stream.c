/* stream.c — streaming reader and writer of the framed record stream
 * (see stream.h and formats/stream.md). */
#include "stream.h"
#include "buf.h"
#include "error.h"
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>     /* XXH3_64bits_* streaming hash */
#include <zstd.h>        /* ZSTD_decompressStream, ZSTD_compressStream2 */
#include <zstd_errors.h> /* ZSTD_getErrorCode */

enum { HEADER_FIXED = 40, TRAILER_SIZE = 28 };

/* ------------------------------------------------------------------ reader */

struct rv_stream_reader {
    FILE *f;
    char name[256];
    ZSTD_DCtx *dctx;
    unsigned char *in;          /* compressed input buffer */
    size_t in_cap;
    ZSTD_inBuffer zin;
    int file_eof;
    size_t last_ret;            /* last ZSTD_decompressStream return; 0 = frame ended */
    int any_input;
    unsigned char *d;           /* decompressed bytes: d[pos..len) not yet consumed */
    size_t d_pos, d_len, d_cap;
    XXH3_state_t *hash;
    uint64_t count;
    char kind[RV_STREAM_KIND_LEN + 1];
    uint32_t kind_version;
    char *meta;
    size_t meta_len;
    int done;
};

static int rd_error(const rv_stream_reader *r, const char *fmt, const char *detail)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, detail);
    return rv_error_set("%s: %s", r->name, msg);
}

/* Reads more compressed input; returns 0, or -1 on an I/O error. */
static int rd_fill_input(rv_stream_reader *r)
{
    if (r->file_eof) {
        r->zin.size = r->zin.pos = 0;
        return 0;
    }
    size_t n = fread(r->in, 1, r->in_cap, r->f);
    if (n < r->in_cap) {
        if (ferror(r->f))
            return rd_error(r, "read error: %s", strerror(errno));
        r->file_eof = 1;
    }
    if (n)
        r->any_input = 1;
    r->zin.src = r->in;
    r->zin.size = n;
    r->zin.pos = 0;
    return 0;
}

/* Ensures at least n unconsumed decompressed bytes. Returns 1 when they are
 * there, 0 at a clean end of input (no bytes at all left), -1 on error. A
 * partial tail (0 < available < n) is reported as truncation by the caller,
 * which knows what it was reading: *avail says how many bytes there were. */
static int rd_ensure(rv_stream_reader *r, size_t n, size_t *avail)
{
    while (r->d_len - r->d_pos < n) {
        /* make room: compact consumed bytes, grow to hold n */
        if (r->d_pos > 0 && (r->d_pos >= r->d_cap / 2 || r->d_cap - r->d_len < (1u << 16))) {
            memmove(r->d, r->d + r->d_pos, r->d_len - r->d_pos);
            r->d_len -= r->d_pos;
            r->d_pos = 0;
        }
        size_t want = n + (1u << 17);
        if (want > r->d_cap) {
            unsigned char *p = realloc(r->d, want);
            if (!p)
                return rv_error_set("%s: out of memory for a %zu-byte record", r->name, n);
            r->d = p;
            r->d_cap = want;
        }
        if (r->zin.pos == r->zin.size) {
            if (rd_fill_input(r) < 0)
                return -1;
            if (r->zin.size == 0) {
                *avail = r->d_len - r->d_pos;
                if (!r->any_input)
                    return rd_error(r, "%sempty input, expected a revela stream", "");
                if (r->last_ret != 0)
                    return rd_error(r, "truncated stream: input ended inside the zstd frame%s", "");
                return 0;
            }
        }
        ZSTD_outBuffer out = {r->d, r->d_cap, r->d_len};
        size_t ret = ZSTD_decompressStream(r->dctx, &out, &r->zin);
        if (ZSTD_isError(ret)) {
            if (r->kind[0] == '\0' && r->d_len == 0)
                return rd_error(r, "not a revela stream: expected zstd-compressed data (zstd: %s)", ZSTD_getErrorName(ret));
            return rd_error(r, "corrupt stream: zstd: %s", ZSTD_getErrorName(ret));
        }
        r->last_ret = ret;
        r->d_len = out.pos;
    }
    *avail = r->d_len - r->d_pos;
    return 1;
}

static void rd_consume(rv_stream_reader *r, size_t n, int hash)
{
    if (hash)
        XXH3_64bits_update(r->hash, r->d + r->d_pos, n);
    r->d_pos += n;
}

static int rd_read_header(rv_stream_reader *r)
{
    size_t avail;
    int k = rd_ensure(r, HEADER_FIXED, &avail);
    if (k < 0)
        return -1;
    if (k == 0 || avail < HEADER_FIXED) {
        if (avail >= 8 && memcmp(r->d + r->d_pos, RV_STREAM_MAGIC, 8) != 0)
            return rd_error(r, "not a revela stream: expected magic \"RVSTREAM\"%s", "");
        return rd_error(r, "truncated stream: ended inside the header%s", "");
    }
    const unsigned char *h = r->d + r->d_pos;
    if (memcmp(h, RV_STREAM_MAGIC, 8) != 0)
        return rd_error(r, "not a revela stream: expected magic \"RVSTREAM\"%s", "");
    uint32_t version = rv_load_u32(h + 8);
    if (version != RV_STREAM_VERSION) {
        char v[32];
        snprintf(v, sizeof v, "%u", version);
        return rd_error(r, "unsupported container version %s (this build reads version 1)", v);
    }
    memcpy(r->kind, h + 12, RV_STREAM_KIND_LEN);
    r->kind[RV_STREAM_KIND_LEN] = '\0';
    for (size_t i = 0; i < RV_STREAM_KIND_LEN; i++) {
        unsigned char c = h[12 + i];
        if (c == 0) {
            for (size_t j = i; j < RV_STREAM_KIND_LEN; j++)
                if (h[12 + j] != 0)
                    return rd_error(r, "header: kind: expected NUL padding after the name%s", "");
            break;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return rd_error(r, "header: kind: expected a lower-case ASCII name%s", "");
    }
    if (r->kind[0] == '\0')
        return rd_error(r, "header: kind: expected a name, found an empty one%s", "");
    r->kind_version = rv_load_u32(h + 28);
    uint64_t meta_len = rv_load_u64(h + 32);
    if (meta_len > RV_STREAM_MAX_META) {
        char v[32];
        snprintf(v, sizeof v, "%llu", (unsigned long long)meta_len);
        return rd_error(r, "header: metadata length %s exceeds the 16 MiB limit", v);
    }
    rd_consume(r, HEADER_FIXED, 1);
    k = rd_ensure(r, (size_t)meta_len, &avail);
    if (k < 0)
        return -1;
    if (avail < meta_len)
        return rd_error(r, "truncated stream: ended inside the metadata%s", "");
    r->meta = malloc((size_t)meta_len + 1);
    if (!r->meta)
        return rv_error_set("%s: out of memory", r->name);
    memcpy(r->meta, r->d + r->d_pos, (size_t)meta_len);
    r->meta[meta_len] = '\0';
    r->meta_len = (size_t)meta_len;
    rd_consume(r, (size_t)meta_len, 1);
    rv_json_parser *jp = rv_json_parser_new();
    if (!jp)
        return -1;
    rv_json *meta = rv_json_parse(jp, r->meta, r->meta_len);
    int bad = !meta || meta->type != RV_JSON_OBJECT;
    rv_json_parser_free(jp);
    if (bad)
        return rd_error(r, "header: metadata: expected a JSON object%s", "");
    return 0;
}

rv_stream_reader *rv_stream_reader_open(FILE *f, const char *name)
{
    rv_stream_reader *r = calloc(1, sizeof *r);
    if (!r) {
        rv_error_set("out of memory");
        return NULL;
    }
    r->f = f;
    snprintf(r->name, sizeof r->name, "%s", (!name || strcmp(name, "-") == 0) ? "<stdin>" : name);
    r->in_cap = ZSTD_DStreamInSize();
    r->in = malloc(r->in_cap);
    r->dctx = ZSTD_createDCtx();
    r->hash = XXH3_createState();
    r->last_ret = 1;
    if (!r->in || !r->dctx || !r->hash) {
        rv_error_set("out of memory");
        rv_stream_reader_close(r);
        return NULL;
    }
    XXH3_64bits_reset(r->hash);
    if (rd_read_header(r) < 0) {
        rv_stream_reader_close(r);
        return NULL;
    }
    return r;
}

const char *rv_stream_reader_kind(const rv_stream_reader *r) { return r->kind; }
uint32_t rv_stream_reader_kind_version(const rv_stream_reader *r) { return r->kind_version; }
const char *rv_stream_reader_name(const rv_stream_reader *r) { return r->name; }
uint64_t rv_stream_reader_count(const rv_stream_reader *r) { return r->count; }

const char *rv_stream_reader_meta(const rv_stream_reader *r, size_t *len)
{
    if (len)
        *len = r->meta_len;
    return r->meta;
}

int rv_stream_reader_expect(const rv_stream_reader *r, const char *kind, uint32_t max_version)
{
    if (strcmp(r->kind, kind) != 0)
        return rv_error_set("%s: expected a %s stream, found a %s stream", r->name, kind, r->kind);
    if (r->kind_version < 1 || r->kind_version > max_version)
        return rv_error_set("%s: %s stream version %u is not supported (this build reads versions 1..%u)",
                            r->name, kind, r->kind_version, max_version);
    return 0;
}

/* After the trailer: the zstd frame must end and no input may follow. */
static int rd_check_end(rv_stream_reader *r)
{
    for (;;) {
        if (r->d_len > r->d_pos)
            return rd_error(r, "unexpected data after the stream trailer%s", "");
        if (r->last_ret == 0)
            break;
        if (r->zin.pos == r->zin.size) {
            if (rd_fill_input(r) < 0)
                return -1;
            if (r->zin.size == 0)
                return rd_error(r, "truncated stream: input ended inside the zstd frame%s", "");
        }
        ZSTD_outBuffer out = {r->d, r->d_cap, r->d_len};
        size_t ret = ZSTD_decompressStream(r->dctx, &out, &r->zin);
        if (ZSTD_isError(ret))
            return rd_error(r, "corrupt stream: zstd: %s", ZSTD_getErrorName(ret));
        r->last_ret = ret;
        r->d_len = out.pos;
    }
    /* the frame ended: anything more is a second stream or garbage */
    if (r->zin.pos == r->zin.size && rd_fill_input(r) < 0)
        return -1;
    if (r->zin.pos < r->zin.size)
        return rd_error(r, "data after the end of the stream (concatenated streams are not supported; "
                           "give the files to rv-cat one by one)%s", "");
    return 0;
}

int rv_stream_read(rv_stream_reader *r, const unsigned char **rec, size_t *len)
{
    if (r->done)
        return 0;
    size_t avail;
    int k = rd_ensure(r, 4, &avail);
    if (k < 0)
        return -1;
    if (avail < 4) {
        char c[32];
        snprintf(c, sizeof c, "%llu", (unsigned long long)r->count);
        return rd_error(r, "truncated stream: no trailer after %s records", c);
    }
    uint32_t n = rv_load_u32(r->d + r->d_pos);
    if (n == RV_STREAM_TRAILER_MARK) {
        uint64_t digest = XXH3_64bits_digest(r->hash);
        k = rd_ensure(r, TRAILER_SIZE, &avail);
        if (k < 0)
            return -1;
        if (avail < TRAILER_SIZE)
            return rd_error(r, "truncated stream: ended inside the trailer%s", "");
        const unsigned char *t = r->d + r->d_pos;
        if (memcmp(t + 20, RV_STREAM_END_MAGIC, 8) != 0)
            return rd_error(r, "corrupt stream: trailer: expected end magic \"RVSTREND\"%s", "");
        uint64_t count = rv_load_u64(t + 4), sum = rv_load_u64(t + 12);
        if (count != r->count) {
            char m[96];
            snprintf(m, sizeof m, "trailer says %llu records, stream holds %llu",
                     (unsigned long long)count, (unsigned long long)r->count);
            return rd_error(r, "corrupt stream: record count mismatch: %s", m);
        }
        if (sum != digest) {
            char m[96];
            snprintf(m, sizeof m, "trailer says %016llx, content hashes to %016llx",
                     (unsigned long long)sum, (unsigned long long)digest);
            return rd_error(r, "corrupt stream: XXH3 checksum mismatch: %s", m);
        }
        rd_consume(r, TRAILER_SIZE, 0);
        if (rd_check_end(r) < 0)
            return -1;
        r->done = 1;
        return 0;
    }
    if (n > RV_STREAM_MAX_RECORD) {
        char m[64];
        snprintf(m, sizeof m, "%u bytes (record %llu)", n, (unsigned long long)r->count);
        return rd_error(r, "corrupt stream: record length %s exceeds the 1 GiB limit", m);
    }
    rd_consume(r, 4, 1);
    k = rd_ensure(r, n, &avail);
    if (k < 0)
        return -1;
    if (avail < n) {
        char m[64];
        snprintf(m, sizeof m, "%llu", (unsigned long long)r->count);
        return rd_error(r, "truncated stream: ended inside record %s", m);
    }
    *rec = r->d + r->d_pos;
    *len = n;
    rd_consume(r, n, 1);
    r->count++;
    return 1;
}

void rv_stream_reader_close(rv_stream_reader *r)
{
    if (!r)
        return;
    ZSTD_freeDCtx(r->dctx);
    XXH3_freeState(r->hash);
    free(r->in);
    free(r->d);
    free(r->meta);
    free(r);
}

/* ------------------------------------------------------------------ writer */

struct rv_stream_writer {
    FILE *f;
    char name[256];
    ZSTD_CCtx *cctx;
    unsigned char *out;
    size_t out_cap;
    unsigned char *pend;        /* uncompressed bytes waiting to be compressed */
    size_t pend_len, pend_cap;
    XXH3_state_t *hash;
    uint64_t count;
    int failed, finished;
};

static int wr_drain(rv_stream_writer *w, const void *src, size_t n, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {src, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->out_cap, 0};
        size_t rem = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        if (ZSTD_isError(rem)) {
            w->failed = 1;
            return rv_error_set("%s: zstd: %s", w->name, ZSTD_getErrorName(rem));
        }
        if (out.pos && fwrite(w->out, 1, out.pos, w->f) != out.pos) {
            w->failed = 1;
            return rv_error_set("%s: write error: %s", w->name, strerror(errno));
        }
        int finished = mode == ZSTD_e_continue ? in.pos == in.size : rem == 0;
        if (finished)
            return 0;
    }
}

/* Appends bytes to the pending buffer (hashing them), compressing when full. */
static int wr_put(rv_stream_writer *w, const void *p, size_t n, int hash)
{
    if (hash && n)
        XXH3_64bits_update(w->hash, p, n);
    if (w->pend_len + n > w->pend_cap) {
        if (w->pend_len && wr_drain(w, w->pend, w->pend_len, ZSTD_e_continue) < 0)
            return -1;
        w->pend_len = 0;
        if (n > w->pend_cap)   /* big record: compress straight from the caller's memory */
            return wr_drain(w, p, n, ZSTD_e_continue);
    }
    if (n)   /* p may be NULL for an empty record */
        memcpy(w->pend + w->pend_len, p, n);
    w->pend_len += n;
    return 0;
}

rv_stream_writer *rv_stream_writer_open(FILE *f, const char *name, const char *kind,
                                        uint32_t kind_version, const char *meta_json, int level)
{
    size_t kl = strlen(kind);
    if (kl == 0 || kl > RV_STREAM_KIND_LEN) {
        rv_error_set("stream kind \"%s\" must be 1..16 characters", kind);
        return NULL;
    }
    if (!meta_json)
        meta_json = "{}";
    size_t ml = strlen(meta_json);
    rv_json_parser *jp = rv_json_parser_new();
    if (!jp)
        return NULL;
    rv_json *meta = rv_json_parse(jp, meta_json, ml);
    int bad = !meta || meta->type != RV_JSON_OBJECT;
    rv_json_parser_free(jp);
    if (bad || ml > RV_STREAM_MAX_META) {
        rv_error_set("internal: stream metadata must be a JSON object under 16 MiB");
        return NULL;
    }
    if (level == 0) {
        const char *env = getenv("RV_ZSTD_LEVEL");
        level = env && *env ? atoi(env) : 1;
        if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel() || level == 0)
            level = 1;
    }
    rv_stream_writer *w = calloc(1, sizeof *w);
    if (!w) {
        rv_error_set("out of memory");
        return NULL;
    }
    w->f = f;
    snprintf(w->name, sizeof w->name, "%s", (!name || strcmp(name, "-") == 0) ? "<stdout>" : name);
    w->cctx = ZSTD_createCCtx();
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = malloc(w->out_cap);
    w->pend_cap = ZSTD_CStreamInSize();
    w->pend = malloc(w->pend_cap);
    w->hash = XXH3_createState();
    if (!w->cctx || !w->out || !w->pend || !w->hash) {
        rv_error_set("out of memory");
        rv_stream_writer_free(w);
        return NULL;
    }
    XXH3_64bits_reset(w->hash);
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1))) {
        rv_error_set("zstd: cannot set compression level %d", level);
        rv_stream_writer_free(w);
        return NULL;
    }
    unsigned char h[HEADER_FIXED] = {0};
    memcpy(h, RV_STREAM_MAGIC, 8);
    rv_store_u32(h + 8, RV_STREAM_VERSION);
    memcpy(h + 12, kind, kl);
    rv_store_u32(h + 28, kind_version);
    rv_store_u64(h + 32, ml);
    if (wr_put(w, h, sizeof h, 1) < 0 || wr_put(w, meta_json, ml, 1) < 0) {
        rv_stream_writer_free(w);
        return NULL;
    }
    return w;
}

int rv_stream_write(rv_stream_writer *w, const void *rec, size_t len)
{
    if (w->failed || w->finished)
        return rv_error_set("%s: write after %s", w->name, w->failed ? "an error" : "finish");
    if (len > RV_STREAM_MAX_RECORD)
        return rv_error_set("%s: record of %zu bytes exceeds the 1 GiB limit", w->name, len);
    unsigned char n[4];
    rv_store_u32(n, (uint32_t)len);
    if (wr_put(w, n, 4, 1) < 0 || wr_put(w, rec, len, 1) < 0)
        return -1;
    w->count++;
    return 0;
}

int rv_stream_writer_finish(rv_stream_writer *w)
{
    if (w->failed || w->finished)
        return rv_error_set("%s: finish after %s", w->name, w->failed ? "an error" : "finish");
    unsigned char t[TRAILER_SIZE];
    rv_store_u32(t, RV_STREAM_TRAILER_MARK);
    rv_store_u64(t + 4, w->count);
    rv_store_u64(t + 12, XXH3_64bits_digest(w->hash));
    memcpy(t + 20, RV_STREAM_END_MAGIC, 8);
    if (wr_put(w, t, sizeof t, 0) < 0)
        return -1;
    if (wr_drain(w, w->pend, w->pend_len, ZSTD_e_end) < 0)
        return -1;
    w->pend_len = 0;
    if (fflush(w->f) != 0) {
        w->failed = 1;
        return rv_error_set("%s: write error: %s", w->name, strerror(errno));
    }
    w->finished = 1;
    return 0;
}

uint64_t rv_stream_writer_count(const rv_stream_writer *w) { return w->count; }

void rv_stream_writer_free(rv_stream_writer *w)
{
    if (!w)
        return;
    ZSTD_freeCCtx(w->cctx);
    XXH3_freeState(w->hash);
    free(w->out);
    free(w->pend);
    free(w);
}
