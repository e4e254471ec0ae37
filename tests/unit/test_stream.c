/* test_stream.c — the record stream: round trips of many and large records,
 * truncation at every byte offset, corrupted bytes, concatenation, kinds. */
#include "test.h"
#include "buf.h"
#include "error.h"
#include "stream.h"

#include <zstd.h>

static const char *suite_name = "stream";

/* Writes n records (record i has length len_of(i) and bytes from a seed) to
 * an in-memory FILE; returns the bytes in *out. */
typedef size_t (*len_fn)(size_t i);

static unsigned char rec_byte(size_t i, size_t j) { return (unsigned char)(i * 131 + j * 7 + (j >> 8)); }

static int write_stream(size_t n, len_fn len_of, const char *kind, const char *meta, rv_buf *out)
{
    char *mem = NULL;
    size_t memlen = 0;
    FILE *f = open_memstream(&mem, &memlen);
    rv_stream_writer *w = rv_stream_writer_open(f, "mem", kind, 1, meta, 1);
    if (!w)
        return -1;
    rv_buf rec = {0};
    for (size_t i = 0; i < n; i++) {
        size_t l = len_of(i);
        rec.len = 0;
        rv_buf_reserve(&rec, l);
        for (size_t j = 0; j < l; j++)
            rec.data[j] = rec_byte(i, j);
        rec.len = l;
        if (rv_stream_write(w, rec.data, rec.len) < 0)
            return -1;
    }
    int rc = rv_stream_writer_finish(w);
    rv_stream_writer_free(w);
    fclose(f);
    rv_buf_free(&rec);
    out->len = 0;
    rv_buf_append(out, mem, memlen);
    free(mem);
    return rc;
}

/* Reads a stream from memory and verifies n records of the expected content.
 * Returns 0 when fully valid, -1 on a reader error, -2 on wrong content. */
static int read_stream(const unsigned char *data, size_t len, size_t n, len_fn len_of)
{
    FILE *f = fmemopen((void *)data, len ? len : 1, "rb");
    if (len == 0) { /* fmemopen rejects size 0 in some libcs: use an empty read */
        fclose(f);
        f = fopen("/dev/null", "rb");
    }
    rv_stream_reader *r = rv_stream_reader_open(f, "mem");
    if (!r) {
        fclose(f);
        return -1;
    }
    const unsigned char *rec;
    size_t rl, i = 0;
    int rc, bad = 0;
    while ((rc = rv_stream_read(r, &rec, &rl)) == 1) {
        if (len_of) {
            if (i >= n || rl != len_of(i))
                bad = 1;
            else
                for (size_t j = 0; j < rl && !bad; j++)
                    bad = rec[j] != rec_byte(i, j);
        }
        i++;
    }
    rv_stream_reader_close(r);
    fclose(f);
    if (rc < 0)
        return -1;
    if (len_of && (bad || i != n))
        return -2;
    return 0;
}

static size_t len_small(size_t i) { return (i * 37) % 50; }
static size_t len_zero(size_t i) { (void)i; return 0; }
static size_t len_big(size_t i) { return i == 1 ? (3u << 20) + 17 : 200000 + i; } /* > zstd block (128 KiB) */
static size_t len_tiny(size_t i) { return 8 + i % 5; }

static void round_trip_counts(void)
{
    size_t counts[] = {0, 1, 2, 10, 1000};
    rv_buf s = {0};
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
        REQUIRE(write_stream(counts[k], len_small, "doc", "{\"a\":1}", &s) == 0, "%s", rv_error_get());
        int rc = read_stream(s.data, s.len, counts[k], len_small);
        CHECK(rc == 0, "n=%zu rc=%d %s", counts[k], rc, rv_error_get());
    }
    rv_buf_free(&s);
}

static void round_trip_million(void)
{
    rv_buf s = {0};
    REQUIRE(write_stream(1000000, len_tiny, "chunk", NULL, &s) == 0, "%s", rv_error_get());
    CHECK(read_stream(s.data, s.len, 1000000, len_tiny) == 0, "%s", rv_error_get());
    rv_buf_free(&s);
}

static void round_trip_empty_records(void)
{
    rv_buf s = {0};
    REQUIRE(write_stream(100, len_zero, "doc", NULL, &s) == 0, "%s", rv_error_get());
    CHECK(read_stream(s.data, s.len, 100, len_zero) == 0, "%s", rv_error_get());
    rv_buf_free(&s);
}

static void round_trip_large_records(void)
{
    rv_buf s = {0};
    REQUIRE(write_stream(4, len_big, "emb", NULL, &s) == 0, "%s", rv_error_get());
    CHECK(read_stream(s.data, s.len, 4, len_big) == 0, "%s", rv_error_get());
    rv_buf_free(&s);
}

static void header_fields(void)
{
    rv_buf s = {0};
    REQUIRE(write_stream(3, len_small, "group", "{\"k\":\"v\"}", &s) == 0, "%s", rv_error_get());
    FILE *f = fmemopen(s.data, s.len, "rb");
    rv_stream_reader *r = rv_stream_reader_open(f, "x.rvs");
    REQUIRE(r != NULL, "%s", rv_error_get());
    CHECK(strcmp(rv_stream_reader_kind(r), "group") == 0, "kind %s", rv_stream_reader_kind(r));
    CHECK(rv_stream_reader_kind_version(r) == 1, "version");
    size_t ml;
    const char *meta = rv_stream_reader_meta(r, &ml);
    CHECK(ml == 9 && strcmp(meta, "{\"k\":\"v\"}") == 0, "meta %s", meta);
    CHECK(rv_stream_reader_expect(r, "group", 1) == 0, "%s", rv_error_get());
    CHECK(rv_stream_reader_expect(r, "doc", 1) < 0, "wrong kind accepted");
    CHECK(strstr(rv_error_get(), "expected a doc stream, found a group stream") != NULL, "%s", rv_error_get());
    rv_stream_reader_close(r);
    fclose(f);
    rv_buf_free(&s);
}

/* Every proper prefix of a valid stream must be rejected. */
static void truncation_every_offset(void)
{
    rv_buf s = {0};
    REQUIRE(write_stream(7, len_small, "doc", "{\"p\":\"x\"}", &s) == 0, "%s", rv_error_get());
    size_t accepted = 0;
    for (size_t cut = 0; cut < s.len; cut++)
        if (read_stream(s.data, cut, 7, NULL) == 0)
            accepted++;
    CHECK(accepted == 0, "%zu truncated prefixes of %zu were accepted", accepted, s.len);
    CHECK(read_stream(s.data, s.len, 7, len_small) == 0, "full stream rejected: %s", rv_error_get());
    rv_buf_free(&s);
}

/* Truncation of the decompressed content at every offset (a writer that died
 * mid-way but whose zstd frame was closed) is also detected. */
static void truncated_content_every_offset(void)
{
    rv_buf s = {0};
    REQUIRE(write_stream(5, len_small, "doc", NULL, &s) == 0, "%s", rv_error_get());
    size_t raw_len = ZSTD_getFrameContentSize(s.data, s.len);
    unsigned char *raw = malloc(1 << 16);
    if (raw_len == ZSTD_CONTENTSIZE_UNKNOWN || raw_len == ZSTD_CONTENTSIZE_ERROR)
        raw_len = ZSTD_decompress(raw, 1 << 16, s.data, s.len);
    else
        ZSTD_decompress(raw, 1 << 16, s.data, s.len);
    REQUIRE(!ZSTD_isError(raw_len) && raw_len < (1 << 16), "decompress");
    size_t accepted = 0;
    unsigned char *comp = malloc(ZSTD_compressBound(raw_len));
    for (size_t cut = 0; cut < raw_len; cut++) {
        size_t cl = ZSTD_compress(comp, ZSTD_compressBound(raw_len), raw, cut, 1);
        if (read_stream(comp, cl, 5, NULL) == 0)
            accepted++;
    }
    CHECK(accepted == 0, "%zu truncated contents accepted", accepted);
    free(comp);
    free(raw);
    rv_buf_free(&s);
}

/* Flipping any single byte of the content must be caught (checksum, zstd or
 * a structural error); we flip in the decompressed content and recompress
 * without the zstd checksum, so only our own checks can catch it. */
static void flipped_content_bytes(void)
{
    rv_buf s = {0};
    REQUIRE(write_stream(6, len_small, "doc", "{\"m\":2}", &s) == 0, "%s", rv_error_get());
    unsigned char *raw = malloc(1 << 16);
    size_t raw_len = ZSTD_decompress(raw, 1 << 16, s.data, s.len);
    REQUIRE(!ZSTD_isError(raw_len), "decompress");
    unsigned char *comp = malloc(ZSTD_compressBound(raw_len));
    size_t accepted = 0, tried = 0;
    for (size_t pos = 0; pos < raw_len; pos++) {
        for (int bit = 0; bit < 8; bit += 3) {
            raw[pos] ^= (unsigned char)(1u << bit);
            size_t cl = ZSTD_compress(comp, ZSTD_compressBound(raw_len), raw, raw_len, 1);
            if (read_stream(comp, cl, 6, len_small) == 0)
                accepted++;
            tried++;
            raw[pos] ^= (unsigned char)(1u << bit);
        }
    }
    CHECK(accepted == 0, "%zu of %zu corrupted contents accepted", accepted, tried);
    free(comp);
    free(raw);
    rv_buf_free(&s);
}

/* Flipping compressed bytes: zstd's checksum or our checks catch every flip
 * that changes the content. (A flip of a bit zstd ignores, such as the frame
 * header's unused bit, decodes to the same content and may pass.) */
static void flipped_compressed_bytes(void)
{
    rv_buf s = {0};
    REQUIRE(write_stream(20, len_small, "doc", NULL, &s) == 0, "%s", rv_error_get());
    size_t wrong = 0, rejected = 0, tried = 0;
    for (size_t pos = 0; pos < s.len; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            s.data[pos] ^= (unsigned char)(1u << bit);
            int rc = read_stream(s.data, s.len, 20, len_small);
            wrong += rc == -2;
            rejected += rc == -1;
            tried++;
            s.data[pos] ^= (unsigned char)(1u << bit);
        }
    }
    CHECK(wrong == 0, "%zu flipped streams decoded to wrong content", wrong);
    CHECK(rejected + 16 >= tried, "only %zu of %zu flips rejected", rejected, tried);
    rv_buf_free(&s);
}

static void concatenated_rejected(void)
{
    rv_buf a = {0}, both = {0};
    REQUIRE(write_stream(3, len_small, "doc", NULL, &a) == 0, "%s", rv_error_get());
    rv_buf_append(&both, a.data, a.len);
    rv_buf_append(&both, a.data, a.len);
    CHECK(read_stream(both.data, both.len, 3, NULL) == -1, "concatenation accepted");
    CHECK(strstr(rv_error_get(), "concatenated") != NULL, "message: %s", rv_error_get());
    /* trailing garbage too */
    both.len = a.len;
    rv_buf_append(&both, "x", 1);
    CHECK(read_stream(both.data, both.len, 3, NULL) == -1, "trailing byte accepted");
    rv_buf_free(&a);
    rv_buf_free(&both);
}

static void garbage_and_empty(void)
{
    CHECK(read_stream((const unsigned char *)"", 0, 0, NULL) == -1, "empty accepted");
    CHECK(strstr(rv_error_get(), "empty input") != NULL, "%s", rv_error_get());
    const char *txt = "{\"_id\":\"1\",\"text\":\"plain JSON is not a stream\"}\n";
    CHECK(read_stream((const unsigned char *)txt, strlen(txt), 0, NULL) == -1, "text accepted");
    CHECK(strstr(rv_error_get(), "not a revela stream") != NULL, "%s", rv_error_get());
    /* valid zstd, wrong magic */
    unsigned char comp[256];
    size_t cl = ZSTD_compress(comp, sizeof comp, "NOTASTREAM-but-zstd-data-long-enough-for-a-header", 50, 1);
    CHECK(read_stream(comp, cl, 0, NULL) == -1, "foreign zstd accepted");
    CHECK(strstr(rv_error_get(), "expected magic") != NULL, "%s", rv_error_get());
}

static void writer_rejects_bad_args(void)
{
    FILE *f = fopen("/dev/null", "wb");
    CHECK(rv_stream_writer_open(f, "x", "", 1, NULL, 1) == NULL, "empty kind accepted");
    CHECK(rv_stream_writer_open(f, "x", "a-very-long-kind-name", 1, NULL, 1) == NULL, "long kind accepted");
    CHECK(rv_stream_writer_open(f, "x", "doc", 1, "[1,2]", 1) == NULL, "non-object meta accepted");
    fclose(f);
}

int main(void)
{
    test_suite = suite_name;
    RUN_TEST(round_trip_counts);
    RUN_TEST(round_trip_empty_records);
    RUN_TEST(round_trip_large_records);
    RUN_TEST(round_trip_million);
    RUN_TEST(header_fields);
    RUN_TEST(truncation_every_offset);
    RUN_TEST(truncated_content_every_offset);
    RUN_TEST(flipped_content_bytes);
    RUN_TEST(flipped_compressed_bytes);
    RUN_TEST(concatenated_rejected);
    RUN_TEST(garbage_and_empty);
    RUN_TEST(writer_rejects_bad_args);
    TEST_EXIT();
}
