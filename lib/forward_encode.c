/* forward_encode.c — tokenisation convention, length-sorted batching and
 * pooling for embedding texts (see forward_encode.h). */
#include "forward_encode.h"
#include "buf.h"
#include "error.h"
#include "ops.h"

#include <stdlib.h>
#include <string.h>

static int is_py_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

int rv_encode_tokenize(const rv_tokenizer *t, rv_tok_state *s, const char *prefix, const char *text, size_t len,
                       size_t max_len, uint32_t eos_id, rv_ids *out, rv_buf *scratch)
{
    /* strip(prefix + strip(text)) */
    while (len && is_py_space((unsigned char)text[0]))
        text++, len--;
    while (len && is_py_space((unsigned char)text[len - 1]))
        len--;
    scratch->len = 0;
    if (rv_buf_append(scratch, prefix, strlen(prefix)) < 0 || rv_buf_append(scratch, text, len) < 0)
        return -1;
    const char *p = (const char *)scratch->data;
    size_t n = scratch->len;
    while (n && is_py_space((unsigned char)p[0]))
        p++, n--;
    while (n && is_py_space((unsigned char)p[n - 1]))
        n--;
    const uint32_t *pre, *suf;
    size_t n_pre, n_suf;
    rv_tokenizer_template(t, &pre, &n_pre, &suf, &n_suf);
    if (max_len < 2 || n_pre + n_suf > max_len - 1)
        return rv_error_set("max-len %zu leaves no room for text after %zu template tokens and EOS", max_len,
                            n_pre + n_suf);
    size_t start = out->n;
    for (size_t i = 0; i < n_pre; i++)
        if (rv_ids_push(out, pre[i]) < 0)
            return -1;
    if (rv_tok_encode(t, s, p, n, 0, out) < 0)
        return -1;
    /* HF truncation keeps the template tokens and cuts the text from the end */
    size_t budget = max_len - 1 - n_pre - n_suf;
    if (out->n - start - n_pre > budget)
        out->n = start + n_pre + budget;
    for (size_t i = 0; i < n_suf; i++)
        if (rv_ids_push(out, suf[i]) < 0)
            return -1;
    return rv_ids_push(out, eos_id);
}

typedef struct {
    size_t len, index;
} seq_len;

static int by_length_desc(const void *a, const void *b)
{
    const seq_len *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;   /* input order among equal lengths */
}

int rv_encode_sequences_with(rv_encode_forward_fn *forward, rv_encode_reserve_fn *reserve, void *self, size_t D,
                             const uint32_t *ids, const size_t *off, size_t n, const rv_encode_params *p, float *out,
                             void (*progress)(void *, size_t), void *ctx, double *flops)
{
    if (n == 0)
        return 0;
    size_t *order = rv_malloc(n * sizeof *order);
    seq_len *sl = rv_malloc(n * sizeof *sl);
    if (!order || !sl) {
        free(order);
        free(sl);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        sl[i].len = off[i + 1] - off[i];
        sl[i].index = i;
        if (sl[i].len == 0) {
            free(order);
            free(sl);
            return rv_error_set("encode: sequence %zu is empty", i);
        }
    }
    qsort(sl, n, sizeof *sl, by_length_desc);
    for (size_t i = 0; i < n; i++)
        order[i] = sl[i].index;
    free(sl);
    size_t longest = off[order[0] + 1] - off[order[0]];
    size_t cap_tokens = p->batch_tokens > longest ? p->batch_tokens : longest;
    size_t cap_seqs = p->batch_size ? p->batch_size : n;
    if (cap_seqs > cap_tokens)
        cap_seqs = cap_tokens;   /* every sequence holds at least one token */
    uint32_t *bids = rv_malloc(cap_tokens * sizeof *bids);
    size_t *boff = rv_malloc((cap_seqs + 1) * sizeof *boff), *rows = rv_malloc(cap_seqs * sizeof *rows);
    float *hid = NULL;
    size_t hid_rows = p->pooling == RV_POOL_MEAN ? cap_tokens : cap_seqs;
    if (bids && boff && rows) {
        size_t bytes;
        if (rv_size_mul(hid_rows, D * sizeof(float), &bytes, "hidden states") == 0)
            hid = rv_malloc(bytes);
    }
    int rc = -1;
    if (!bids || !boff || !rows || !hid || (reserve && reserve(self, cap_tokens, cap_seqs, hid_rows) < 0))
        goto out;
    size_t done = 0;
    while (done < n) {
        size_t k = 0, tok = 0;
        boff[0] = 0;
        while (done + k < n && k < cap_seqs) {
            size_t s = order[done + k], len = off[s + 1] - off[s];
            if (k && tok + len > cap_tokens)
                break;
            memcpy(bids + tok, ids + off[s], len * sizeof *bids);
            tok += len;
            boff[++k] = tok;
            rows[k - 1] = tok - 1;
        }
        if (p->pooling == RV_POOL_EOS) {
            if (forward(self, bids, boff, k, rows, k, hid, flops) < 0)
                goto out;
            for (size_t i = 0; i < k; i++)
                memcpy(out + order[done + i] * D, hid + i * D, D * sizeof(float));
        } else {
            if (forward(self, bids, boff, k, NULL, 0, hid, flops) < 0)
                goto out;
            for (size_t i = 0; i < k; i++) {
                float *o = out + order[done + i] * D;
                memset(o, 0, D * sizeof(float));
                for (size_t t = boff[i]; t < boff[i + 1]; t++)
                    for (size_t j = 0; j < D; j++)
                        o[j] += hid[t * D + j];
                float inv = 1.0f / (float)(boff[i + 1] - boff[i]);
                for (size_t j = 0; j < D; j++)
                    o[j] *= inv;
            }
        }
        done += k;
        if (progress)
            progress(ctx, done);
    }
    if (p->normalize)
        rv_op_l2_normalize(out, n, D);
    rc = 0;
out:
    free(order); free(bids); free(boff); free(rows); free(hid);
    return rc;
}

static int cpu_forward(void *self, const uint32_t *ids, const size_t *seq_off, size_t n_seqs, const size_t *rows,
                       size_t n_rows, float *hidden, double *flops)
{
    rv_forward *f = self;
    if (rv_forward_run(f, ids, seq_off, n_seqs, rows, n_rows, hidden, NULL) < 0)
        return -1;
    if (flops)
        *flops += rv_forward_last_flops(f);
    return 0;
}

int rv_encode_sequences(rv_forward *f, size_t D, const uint32_t *ids, const size_t *off, size_t n,
                        const rv_encode_params *p, float *out, void (*progress)(void *, size_t), void *ctx,
                        double *flops)
{
    return rv_encode_sequences_with(cpu_forward, NULL, f, D, ids, off, n, p, out, progress, ctx, flops);
}
