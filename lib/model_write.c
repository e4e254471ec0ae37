/* model_write.c — a full net as a Hugging Face model directory (see model_write.h). */
#include "model_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic_file.h"
#include "buf.h"
#include "error.h"
#include "safetensors.h"

/* Copies src to dst byte for byte (dst written atomically). */
static int copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    if (!in)
        return rv_error_set("%s: cannot open: %s", src, strerror(errno));
    rv_atomic_file a;
    if (rv_atomic_open(&a, dst) < 0) {
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t got;
    int rc = 0;
    while ((got = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, got, a.f) != got) {
            rc = rv_error_set("%s: write error", dst);
            break;
        }
    if (ferror(in))
        rc = rv_error_set("%s: read error", src);
    fclose(in);
    if (rc < 0) {
        rv_atomic_abort(&a);
        return -1;
    }
    return rv_atomic_commit(&a);
}

/* The directory part of a file path ("." when none). */
static void dir_of(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, size, ".");
    else
        snprintf(out, size, "%.*s", (int)(slash - path), path);
}

typedef struct {
    rv_st_write_tensor *t;
    uint64_t *shapes;   /* 2 per tensor */
    size_t n, cap;
    char **names;
} tensor_list;

static int add_tensor(void *ctx, const char *name, size_t rows, size_t cols, const float *data)
{
    tensor_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        rv_st_write_tensor *t = realloc(l->t, cap * sizeof *t);
        uint64_t *sh = t ? realloc(l->shapes, cap * 2 * sizeof *sh) : NULL;
        char **nm = sh ? realloc(l->names, cap * sizeof *nm) : NULL;
        if (t)
            l->t = t;
        if (sh)
            l->shapes = sh;
        if (nm)
            l->names = nm;
        if (!t || !sh || !nm)
            return rv_error_set("model write: out of memory");
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name)))
        return rv_error_set("model write: out of memory");
    l->shapes[2 * l->n] = rows;
    l->shapes[2 * l->n + 1] = cols;
    l->t[l->n] = (rv_st_write_tensor){l->names[l->n], RV_ST_F32, cols ? 2u : 1u, NULL, data};
    l->n++;
    return 0;
}

int rv_model_dir_write(const char *dir, const rv_train_net *n, const char *config_json, const char *tokenizer_json,
                       const char *extra_meta)
{
    char tmp[4096], path[4300], src[4300], sdir[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= (int)sizeof tmp)
        return rv_error_set("%s: path too long", dir);
    if (rv_remove_flat_dir(tmp) < 0)
        return -1;
    if (mkdir(tmp, 0777) != 0)
        return rv_error_set("%s: cannot create: %s", tmp, strerror(errno));
    tensor_list l = {0};
    int rc = -1;
    if (rv_train_net_each_tensor(n, add_tensor, &l) != 0)
        goto done;
    for (size_t i = 0; i < l.n; i++)   /* shapes pointed to once the array stopped moving */
        l.t[i].shape = &l.shapes[2 * i];
    const char *meta[4] = {"format", "pt", "revela", extra_meta ? extra_meta : "{}"};
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if (rv_safetensors_write(path, l.t, l.n, meta, 2) < 0)
        goto done;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    if (copy_file(config_json, path) < 0)
        goto done;
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    if (copy_file(tokenizer_json, path) < 0)
        goto done;
    /* the special-token files rv-encode and transformers read, from either source's directory */
    static const char *const extras[] = {"tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};
    const char *srcs[2] = {tokenizer_json, config_json};
    for (size_t e = 0; e < sizeof extras / sizeof *extras; e++)
        for (int k = 0; k < 2; k++) {
            struct stat st;
            dir_of(srcs[k], sdir, sizeof sdir);
            snprintf(src, sizeof src, "%s/%s", sdir, extras[e]);
            if (stat(src, &st) != 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", tmp, extras[e]);
            if (copy_file(src, path) < 0)
                goto done;
            break;
        }
    rc = rv_dir_replace(tmp, dir);
done:
    for (size_t i = 0; i < l.n; i++)
        free(l.names[i]);
    free(l.names);
    free(l.t);
    free(l.shapes);
    return rc;
}
