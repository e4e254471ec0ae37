/* inbatch_attn.c — CPU forward/backward of the Revela in-batch weights and
 * in-batch attention (see inbatch_attn.h). The attention works on one
 * (query chunk i, key chunk j, head h) tile of L x len_j scores at a time;
 * the forward is parallel over (i, h), the backward over kv heads, so that
 * each task owns the dk/dv of its kv head and the dq of the query heads that
 * read it. */
#include "inbatch_attn.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "half.h"
#include "train_ops_blas.h"

/* ---------------------------------------------------------------- weights W */
static float round_bf16(float x) { return rv_bf16_to_f32(rv_f32_to_bf16(x)); }

int rv_inbatch_weights_forward(int batch, int dim, const float *q, const float *p, double tau,
                               rv_sim_numerics numerics, float *s, float *w)
{
    if (batch < 2 || dim <= 0)
        return rv_error_set("inbatch_weights: expected batch >= 2 and dim > 0, found %d and %d", batch, dim);
    if (!(tau > 0))
        return rv_error_set("inbatch_weights: expected a temperature > 0, found %g", tau);
    const int B = batch;
    double *z = rv_malloc((size_t)B * B * sizeof *z);
    if (!z)
        return -1;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double acc = 0;
            for (int d = 0; d < dim; d++)
                acc += (double)q[(size_t)i * dim + d] * p[(size_t)j * dim + d];
            if (numerics == RV_SIM_BF16) {
                float sb = round_bf16((float)acc);
                s[i * B + j] = sb;
                z[i * B + j] = round_bf16(sb / (float)tau);
            } else {
                s[i * B + j] = (float)acc;
                z[i * B + j] = acc / tau;
            }
        }
    for (int i = 0; i < B; i++) {
        double m = -DBL_MAX;
        for (int j = 0; j < B; j++)
            if (j != i && z[i * B + j] > m)
                m = z[i * B + j];
        if (numerics == RV_SIM_BF16) {   /* float softmax, as torch runs it on a bf16 tensor */
            float sum = 0;   /* w holds exp(z - m) until the division */
            for (int j = 0; j < B; j++)
                sum += (w[i * B + j] = j == i ? 0.0f : expf((float)(z[i * B + j] - m)));
            for (int j = 0; j < B; j++)
                w[i * B + j] = round_bf16(w[i * B + j] / sum);
        } else {
            double sum = 0;
            for (int j = 0; j < B; j++)
                if (j != i)
                    sum += exp(z[i * B + j] - m);
            for (int j = 0; j < B; j++)
                w[i * B + j] = j == i ? 0.0f : (float)(exp(z[i * B + j] - m) / sum);
        }
    }
    free(z);
    return 0;
}

void rv_inbatch_weights_backward(int batch, int dim, const float *q, const float *p, const float *w, double tau,
                                 const float *dw, float *ds, float *dq, float *dp)
{
    const int B = batch;
    for (int i = 0; i < B; i++) {
        double mean = 0;   /* sum_k W_ik dW_ik */
        for (int k = 0; k < B; k++)
            mean += (double)w[i * B + k] * dw[i * B + k];
        for (int j = 0; j < B; j++)
            ds[i * B + j] = j == i ? 0.0f : (float)(w[i * B + j] * (dw[i * B + j] - mean) / tau);
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            float g = ds[i * B + j];
            if (g == 0.0f)
                continue;
            for (int d = 0; d < dim; d++) {
                if (dq)
                    dq[(size_t)i * dim + d] += g * p[(size_t)j * dim + d];
                if (dp)
                    dp[(size_t)j * dim + d] += g * q[(size_t)i * dim + d];
            }
        }
}

/* ---------------------------------------------------------------- in-batch attention */

/* vnorm[(j*Hkv + g)*L + s] = ||v[j, s, g, :]||. */
static float *value_norms(const rv_attn_shape *s, const float *v)
{
    const int B = s->batch, L = s->seq_len, Hkv = s->n_kv_heads, hd = s->head_dim;
    size_t count;
    if (rv_size_mul((size_t)B * Hkv, (size_t)L, &count, "inbatch value norms") != 0)
        return NULL;
    float *vn = rv_malloc(count * sizeof *vn);
    if (!vn)
        return NULL;
    for (int j = 0; j < B; j++)
        for (int t = 0; t < L; t++)
            for (int g = 0; g < Hkv; g++) {
                const float *row = v + (((size_t)j * L + t) * Hkv + g) * hd;
                double ss = 0;
                for (int d = 0; d < hd; d++)
                    ss += (double)row[d] * row[d];
                vn[((size_t)j * Hkv + g) * L + t] = (float)sqrt(ss);
            }
    return vn;
}

static int check_cfg(const rv_inbatch_cfg *c, const int *lengths)
{
    if (rv_attn_shape_check(&c->shape, lengths) != 0)
        return rv_error_prefix("inbatch");
    if (c->v_norm && !(c->eps >= 0))
        return rv_error_set("inbatch: expected a V-norm eps >= 0, found %g", (double)c->eps);
    return 0;
}

/* Scaled scores of query chunk i (head h) against key chunk j (kv head g),
 * turned into the row softmax; returns nothing, fills P[L, nk]. When lse is
 * given, each row is normalised from scratch and its log-sum-exp stored;
 * otherwise the stored lse is used (backward recomputation). */
static void pair_probs(const float *Q, int ldq, const float *K, int ldk, int L, int nk, int hd, float scale,
                       float *P, float *lse_out, const float *lse_in)
{
    rv_gemm(0, 1, L, nk, hd, scale, Q, ldq, K, ldk, 0.0f, P, nk);
    for (int t = 0; t < L; t++) {
        float *row = P + (size_t)t * nk;
        if (lse_in) {
            float l = lse_in[t];
            for (int s = 0; s < nk; s++)
                row[s] = expf(row[s] - l);
            continue;
        }
        float m = -FLT_MAX;
        for (int s = 0; s < nk; s++)
            m = row[s] > m ? row[s] : m;
        double sum = 0;
        for (int s = 0; s < nk; s++)
            sum += (row[s] = expf(row[s] - m));
        float inv = (float)(1.0 / sum);
        for (int s = 0; s < nk; s++)
            row[s] *= inv;
        lse_out[t] = m + (float)log(sum);
    }
}

int rv_inbatch_attn_forward(const rv_inbatch_cfg *c, const int *lengths, const float *w, const float *q,
                            const float *k, const float *v, float *out, float *lse, float *denom)
{
    if (check_cfg(c, lengths) != 0)
        return -1;
    const rv_attn_shape *sh = &c->shape;
    const int B = sh->batch, L = sh->seq_len, H = sh->n_heads, Hkv = sh->n_kv_heads, hd = sh->head_dim;
    const int rep = H / Hkv, ldq = H * hd, ldk = Hkv * hd;
    const float scale = (float)(1.0 / sqrt((double)hd));
    float *vn = c->v_norm ? value_norms(sh, v) : NULL;
    if (c->v_norm && !vn)
        return -1;
    int failed = 0;
    #pragma omp parallel if ((size_t)B * B * H * L * L * hd >= RV_PAR_MIN_WORK)
    {
        float *P = malloc((size_t)L * L * sizeof *P), *Bm = malloc((size_t)L * hd * sizeof *Bm);
        if (!P || !Bm) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for collapse(2) schedule(dynamic)
        for (int i = 0; i < B; i++)
            for (int h = 0; h < H; h++) {
                if (!P || !Bm)
                    continue;
                int g = h / rep;
                const float *Q = q + (size_t)i * L * ldq + (size_t)h * hd;
                float *O = out + (size_t)i * L * ldq + (size_t)h * hd;
                for (int t = 0; t < L; t++)
                    memset(O + (size_t)t * ldq, 0, (size_t)hd * sizeof *O);
                for (int j = 0; j < B; j++) {
                    float wij = w[i * B + j];
                    size_t st = (((size_t)i * B + j) * H + h) * L;
                    if (c->skip_zero_weights && wij == 0.0f) {
                        for (int t = 0; t < L; t++) {
                            lse[st + t] = 0.0f;
                            denom[st + t] = 1.0f;
                        }
                        continue;
                    }
                    int nk = lengths[j];
                    const float *K = k + (size_t)j * L * ldk + (size_t)g * hd;
                    const float *V = v + (size_t)j * L * ldk + (size_t)g * hd;
                    pair_probs(Q, ldq, K, ldk, L, nk, hd, scale, P, lse + st, NULL);
                    rv_gemm(0, 0, L, hd, nk, 1.0f, P, nk, V, ldk, 0.0f, Bm, hd);
                    const float *nv = vn ? vn + ((size_t)j * Hkv + g) * L : NULL;
                    for (int t = 0; t < L; t++) {
                        float den = 1.0f;
                        if (nv) {
                            double n = 0;
                            for (int s = 0; s < nk; s++)
                                n += (double)P[(size_t)t * nk + s] * nv[s];
                            den = (float)(n + c->eps);
                        }
                        denom[st + t] = den;
                        float f = wij / den;
                        for (int d = 0; d < hd; d++)
                            O[(size_t)t * ldq + d] += f * Bm[(size_t)t * hd + d];
                    }
                }
            }
        free(P);
        free(Bm);
    }
    free(vn);
    if (failed)
        return rv_error_set("inbatch_attn_forward: out of memory for a %dx%d score tile", L, L);
    return 0;
}

int rv_inbatch_attn_backward(const rv_inbatch_cfg *c, const int *lengths, const float *w, const float *q,
                             const float *k, const float *v, const float *lse, const float *denom,
                             const float *dout, float *dq, float *dk, float *dv, float *dw)
{
    if (check_cfg(c, lengths) != 0)
        return -1;
    const rv_attn_shape *sh = &c->shape;
    const int B = sh->batch, L = sh->seq_len, H = sh->n_heads, Hkv = sh->n_kv_heads, hd = sh->head_dim;
    const int rep = H / Hkv, ldq = H * hd, ldk = Hkv * hd;
    const float scale = (float)(1.0 / sqrt((double)hd));
    float *vn = c->v_norm ? value_norms(sh, v) : NULL;
    if (c->v_norm && !vn)
        return -1;
    int failed = 0;
    /* dL/dW partial sums per kv head, added in head order after the loop:
     * the result does not depend on the thread count or schedule */
    double *dw_heads = calloc((size_t)Hkv * B * B, sizeof *dw_heads);
    if (!dw_heads) {
        free(vn);
        return rv_error_set("inbatch_attn_backward: out of memory");
    }
    #pragma omp parallel if ((size_t)B * B * H * L * L * hd >= RV_PAR_MIN_WORK)
    {
        float *P = malloc((size_t)L * L * sizeof *P), *dA = malloc((size_t)L * L * sizeof *dA);
        float *Bm = malloc((size_t)L * hd * sizeof *Bm), *db = malloc((size_t)L * hd * sizeof *db);
        float *dn = malloc((size_t)L * sizeof *dn);
        int ok = P && dA && Bm && db && dn;
        if (!ok) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(dynamic)
        for (int g = 0; g < Hkv; g++) {
            if (!ok)
                continue;
            double *dw_part = dw_heads + (size_t)g * B * B;
            for (int h = g * rep; h < (g + 1) * rep; h++)
                for (int i = 0; i < B; i++)
                    for (int j = 0; j < B; j++) {
                        float wij = w[i * B + j];
                        if (c->skip_zero_weights && wij == 0.0f)
                            continue;
                        int nk = lengths[j];
                        size_t st = (((size_t)i * B + j) * H + h) * L;
                        size_t qoff = (size_t)i * L * ldq + (size_t)h * hd, koff = (size_t)j * L * ldk + (size_t)g * hd;
                        const float *Q = q + qoff, *G = dout + qoff, *K = k + koff, *V = v + koff;
                        const float *nv = vn ? vn + ((size_t)j * Hkv + g) * L : NULL;
                        pair_probs(Q, ldq, K, ldk, L, nk, hd, scale, P, NULL, lse + st);
                        rv_gemm(0, 0, L, hd, nk, 1.0f, P, nk, V, ldk, 0.0f, Bm, hd);
                        /* b~ = Bm / den: dW_ij = sum G.b~; db = W_ij G / den; dn = -W_ij (G.Bm) / den^2 */
                        double dwij = 0;
                        for (int t = 0; t < L; t++) {
                            double den = denom[st + t], gb = 0;
                            for (int d = 0; d < hd; d++)
                                gb += (double)G[(size_t)t * ldq + d] * Bm[(size_t)t * hd + d];
                            dwij += gb / den;
                            dn[t] = nv ? (float)(-wij * gb / (den * den)) : 0.0f;
                            float f = (float)(wij / den);
                            for (int d = 0; d < hd; d++)
                                db[(size_t)t * hd + d] = f * G[(size_t)t * ldq + d];
                        }
                        dw_part[i * B + j] += dwij;
                        if (wij == 0.0f)
                            continue;   /* nothing reaches q, k, v through a zero weight */
                        /* dA = db V^T (+ dn ||V||); dS = P (dA - rowsum(P dA)) * scale, in place */
                        rv_gemm(0, 1, L, nk, hd, 1.0f, db, hd, V, ldk, 0.0f, dA, nk);
                        for (int t = 0; t < L; t++) {
                            float *a = dA + (size_t)t * nk;
                            const float *pr = P + (size_t)t * nk;
                            double D = 0;
                            if (nv)
                                for (int s = 0; s < nk; s++)
                                    a[s] += dn[t] * nv[s];
                            for (int s = 0; s < nk; s++)
                                D += (double)pr[s] * a[s];
                            for (int s = 0; s < nk; s++)
                                a[s] = pr[s] * (a[s] - (float)D) * scale;
                        }
                        if (dq)
                            rv_gemm(0, 0, L, hd, nk, 1.0f, dA, nk, K, ldk, 1.0f, dq + qoff, ldq);
                        if (dk)
                            rv_gemm(1, 0, nk, hd, L, 1.0f, dA, nk, Q, ldq, 1.0f, dk + koff, ldk);
                        if (dv) {
                            rv_gemm(1, 0, nk, hd, L, 1.0f, P, nk, db, hd, 1.0f, dv + koff, ldk);
                            if (nv)   /* d||V_s|| / dV_s = V_s / ||V_s|| */
                                for (int s = 0; s < nk; s++) {
                                    if (nv[s] == 0.0f)
                                        continue;
                                    double r = 0;
                                    for (int t = 0; t < L; t++)
                                        r += (double)P[(size_t)t * nk + s] * dn[t];
                                    float f = (float)(r / nv[s]);
                                    for (int d = 0; d < hd; d++)
                                        dv[koff + (size_t)s * ldk + d] += f * V[(size_t)s * ldk + d];
                                }
                        }
                    }
        }
        free(P);
        free(dA);
        free(Bm);
        free(db);
        free(dn);
    }
    if (!failed && dw)
        for (int e = 0; e < B * B; e++) {
            if (c->skip_zero_weights && w[e] == 0.0f)
                continue;
            double sum = 0;
            for (int g = 0; g < Hkv; g++)
                sum += dw_heads[(size_t)g * B * B + e];
            dw[e] += (float)sum;
        }
    free(dw_heads);
    free(vn);
    if (failed)
        return rv_error_set("inbatch_attn_backward: out of memory for %dx%d score tiles", L, L);
    return 0;
}
