/* fuzz_stream.c — libFuzzer target for the stream reader and every record
 * decoder: arbitrary bytes must give a clean error or a valid stream, never a
 * crash, hang, leak or out-of-bounds access. */
#include "buf.h"
#include "error.h"
#include "records.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* First byte 'Z': the rest is taken as decompressed content and compressed
 * here, so the fuzzer reaches our header/record/trailer parsing rather than
 * only zstd's own error paths. Otherwise the input is fed as it is. */
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned char *owned = NULL;
    if (data[0] == 'Z') {
        size_t cap = ZSTD_compressBound(size - 1);
        owned = malloc(cap);
        if (!owned)
            return 0;
        size = ZSTD_compress(owned, cap, data + 1, size - 1, 1);
        if (ZSTD_isError(size)) {
            free(owned);
            return 0;
        }
        data = owned;
    }
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f) {
        free(owned);
        return 0;
    }
    rv_stream_reader *r = rv_stream_reader_open(f, "fuzz");
    if (r) {
        const rv_kind *k = rv_kind_find(rv_stream_reader_kind(r));
        size_t ml;
        const char *meta = rv_stream_reader_meta(r, &ml);
        rv_buf out = {0};
        const unsigned char *rec;
        size_t len;
        while (rv_stream_read(r, &rec, &len) == 1) {
            out.len = 0;
            if (k)
                k->to_json(rec, len, meta, ml, &out);
        }
        rv_buf_free(&out);
        rv_stream_reader_close(r);
    }
    fclose(f);
    free(owned);
    return 0;
}
