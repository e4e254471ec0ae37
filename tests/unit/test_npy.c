/* test_npy.c — the .npy reader on files written by NumPy (every accepted
 * version and dtype, and the kinds it must refuse; tests/fixtures/search,
 * made by scripts/make-search-fixtures.py) and on hand-made headers, truncated
 * files and trailing bytes. */
#include "test.h"
#include "error.h"
#include "npy.h"

#include <stdint.h>

static char path_buf[4096];

static const char *fixture(const char *name)
{
    const char *root = getenv("RV_ROOT");
    snprintf(path_buf, sizeof path_buf, "%s/tests/fixtures/search/%s", root ? root : ".", name);
    return path_buf;
}

/* Reads a whole NumPy-written file as float32; the values are arange(12)/4
 * in a 3x4 array (plus 1e-12 in the float64 file). */
static void check_good(const char *name, rv_npy_dtype dtype, double add)
{
    FILE *f = fopen(fixture(name), "rb");
    REQUIRE(f, "cannot open %s", path_buf);
    rv_npy_info info;
    int rc = rv_npy_read_header(f, name, &info);
    CHECK(rc == 0, "%s: %s", name, rv_error_get());
    if (rc == 0) {
        CHECK(info.dtype == dtype && info.rows == 3 && info.cols == 4, "%s: dtype %d shape %llu x %llu", name,
              (int)info.dtype, (unsigned long long)info.rows, (unsigned long long)info.cols);
        CHECK(info.data_offset % 16 == 0, "%s: data offset %zu is aligned as NumPy writes it", name, info.data_offset);
        float v[12];
        CHECK(rv_npy_read_f32(f, name, &info, 3, v) == 0, "%s: %s", name, rv_error_get());
        for (int i = 0; i < 12; i++)
            CHECK(v[i] == (float)(i / 4.0 + add), "%s: value %d is %.9g, expected %.9g", name, i, v[i],
                  (float)(i / 4.0 + add));
        CHECK(rv_npy_expect_end(f, name) == 0, "%s: %s", name, rv_error_get());
    }
    fclose(f);
}

static void test_numpy_files(void)
{
    check_good("npy_v1_f4.npy", RV_NPY_F32, 0);
    check_good("npy_v2_f4.npy", RV_NPY_F32, 0);
    check_good("npy_v3_f2.npy", RV_NPY_F16, 0);
    check_good("npy_f8.npy", RV_NPY_F64, 1e-12);
}

static void test_f16_raw(void)
{
    FILE *f = fopen(fixture("npy_v3_f2.npy"), "rb");
    REQUIRE(f, "open");
    rv_npy_info info;
    uint16_t h[12];
    REQUIRE(rv_npy_read_header(f, "v3", &info) == 0, "%s", rv_error_get());
    CHECK(rv_npy_read_f16(f, "v3", &info, 3, h) == 0, "%s", rv_error_get());
    CHECK(h[0] == 0x0000 && h[1] == 0x3400 && h[4] == 0x3c00, "binary16 bits %04x %04x %04x", h[0], h[1], h[4]);
    fclose(f);
}

static void test_empty_array(void)
{
    FILE *f = fopen(fixture("npy_empty.npy"), "rb");
    REQUIRE(f, "open");
    rv_npy_info info;
    CHECK(rv_npy_read_header(f, "empty", &info) == 0, "%s", rv_error_get());
    CHECK(info.rows == 0 && info.cols == 4 && info.data_bytes == 0, "shape (0, 4)");
    CHECK(rv_npy_expect_end(f, "empty") == 0, "%s", rv_error_get());
    fclose(f);
}

static void expect_file_error(const char *name, const char *needle)
{
    FILE *f = fopen(fixture(name), "rb");
    REQUIRE(f, "open %s", name);
    rv_npy_info info;
    CHECK(rv_npy_read_header(f, name, &info) < 0, "%s accepted", name);
    CHECK(strstr(rv_error_get(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", name, rv_error_get(), needle);
    CHECK(strncmp(rv_error_get(), name, strlen(name)) == 0, "%s: message names the file: %s", name, rv_error_get());
    fclose(f);
}

static void test_refused_files(void)
{
    expect_file_error("npy_bad_fortran.npy", "expected C order");
    expect_file_error("npy_bad_bigendian.npy", "big-endian '>f4'");
    expect_file_error("npy_bad_int.npy", "expected '<f4', '<f2' or '<f8', found '<i4'");
    expect_file_error("npy_bad_1d.npy", "expected a 2-D array (rows, dim), found 1 dimension");
    expect_file_error("npy_bad_3d.npy", "found 3 dimensions");
}

/* Builds "\x93NUMPY" v1.0 + header text padded to a multiple of 64 with '\n'. */
static size_t make_v1(unsigned char *out, const char *dict)
{
    size_t n = strlen(dict), total = 10 + n + 1;
    size_t padded = (total + 63) / 64 * 64;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    out[8] = (unsigned char)(hlen & 0xff);
    out[9] = (unsigned char)(hlen >> 8);
    memcpy(out + 10, dict, n);
    memset(out + 10 + n, ' ', padded - total);
    out[padded - 1] = '\n';
    return padded;
}

static void expect_parse(const char *dict, int ok, const char *needle)
{
    unsigned char buf[512];
    size_t n = make_v1(buf, dict);
    rv_npy_info info;
    int rc = rv_npy_parse_header(buf, n, "h.npy", &info);
    if (ok) {
        CHECK(rc == 0, "header %s: %s", dict, rv_error_get());
    } else {
        CHECK(rc < 0, "header %s accepted", dict);
        CHECK(strstr(rv_error_get(), needle) != NULL, "header %s: message \"%s\" lacks \"%s\"", dict, rv_error_get(),
              needle);
    }
}

static void test_headers(void)
{
    expect_parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 1, "");
    expect_parse("{\"shape\":(3,4),\"descr\":\"<f2\",\"fortran_order\":False}", 1, "");
    expect_parse("{'descr': '<f4', 'fortran_order': False, 'shape': ( 3 ,4 , ) }", 1, "");
    expect_parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L), }", 1, "");
    expect_parse("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 4), }", 1, "");   /* one row: same bytes */
    expect_parse("{'descr': '<f4', 'shape': (3, 4), }", 0, "missing key 'fortran_order'");
    expect_parse("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)}", 0, "appears twice");
    expect_parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'extra': 1}", 0, "found 'extra'");
    expect_parse("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", 0, "structured dtypes");
    expect_parse("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3, 4)}", 0, "True or False");
    expect_parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -4)}", 0, "non-negative integer");
    expect_parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3 4)}", 0, "',' or ')' in shape");
    expect_parse("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)} x", 0, "only spaces");
    expect_parse("{'descr': '<f4' 'fortran_order': False}", 0, "',' or '}' after a value");
    expect_parse("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 4)}", 0,
                 "a dimension below 2^64");
    expect_parse("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4)}", 0, "overflow");
    expect_parse("{'descr': '<f4, 'fortran_order': False}", 0, "expected");
}

static void test_preamble(void)
{
    unsigned char buf[128];
    size_t n = make_v1(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
    rv_npy_info info;
    unsigned char bad[128];
    memcpy(bad, buf, n);
    bad[1] = 'X';
    CHECK(rv_npy_parse_header(bad, n, "m", &info) < 0 && strstr(rv_error_get(), "magic"), "bad magic: %s",
          rv_error_get());
    memcpy(bad, buf, n);
    bad[6] = 4;
    CHECK(rv_npy_parse_header(bad, n, "m", &info) < 0 && strstr(rv_error_get(), "found 4.0"), "version 4: %s",
          rv_error_get());
    CHECK(rv_npy_parse_header(buf, 7, "m", &info) < 0 && strstr(rv_error_get(), "truncated"), "7 bytes: %s",
          rv_error_get());
    CHECK(rv_npy_parse_header(buf, n - 5, "m", &info) < 0 && strstr(rv_error_get(), "truncated"), "cut header: %s",
          rv_error_get());
    memcpy(bad, "\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12);
    CHECK(rv_npy_parse_header(bad, 12, "m", &info) < 0 && strstr(rv_error_get(), "header length"),
          "huge header length: %s", rv_error_get());
}

/* A good header, then too few or too many data bytes, read through a FILE. */
static void test_truncated_and_trailing(void)
{
    unsigned char buf[256];
    size_t n = make_v1(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    float vals[6] = {1, 2, 3, 4, 5, 6};
    memcpy(buf + n, vals, sizeof vals);
    float out[6];
    rv_npy_info info;
    for (size_t cut = 0; cut < n + sizeof vals; cut += 7) {   /* every cut point: an error, never success */
        FILE *f = fmemopen(buf, cut, "rb");
        REQUIRE(f, "fmemopen");
        int rc = rv_npy_read_header(f, "t.npy", &info);
        if (rc == 0)
            rc = rv_npy_read_f32(f, "t.npy", &info, 2, out);
        CHECK(rc < 0 && strstr(rv_error_get(), "truncated"), "cut at %zu: rc %d, %s", cut, rc, rv_error_get());
        fclose(f);
    }
    FILE *f = fmemopen(buf, n + sizeof vals, "rb");
    REQUIRE(f, "fmemopen");
    CHECK(rv_npy_read_header(f, "t.npy", &info) == 0 && rv_npy_read_f32(f, "t.npy", &info, 2, out) == 0 &&
              rv_npy_expect_end(f, "t.npy") == 0 && out[5] == 6,
          "whole file: %s", rv_error_get());
    fclose(f);
    buf[n + sizeof vals] = 0;
    f = fmemopen(buf, n + sizeof vals + 1, "rb");
    REQUIRE(f, "fmemopen");
    CHECK(rv_npy_read_header(f, "t.npy", &info) == 0 && rv_npy_read_f32(f, "t.npy", &info, 2, out) == 0, "%s",
          rv_error_get());
    CHECK(rv_npy_expect_end(f, "t.npy") < 0 && strstr(rv_error_get(), "found more bytes"), "trailing byte: %s",
          rv_error_get());
    fclose(f);
}

int main(void)
{
    test_suite = "npy";
    RUN_TEST(test_numpy_files);
    RUN_TEST(test_f16_raw);
    RUN_TEST(test_empty_array);
    RUN_TEST(test_refused_files);
    RUN_TEST(test_headers);
    RUN_TEST(test_preamble);
    RUN_TEST(test_truncated_and_trailing);
    TEST_EXIT();
}
