/* stream.h — the framed record stream every rv-* tool reads and writes.
 *
 * A stream is one zstd frame (content checksum on) whose content is:
 *   header  "RVSTREAM", u32 container version, 16-byte kind name, u32 kind
 *           version, u64 metadata length, metadata (a JSON object)
 *   records u32 length + that many bytes, repeated
 *   trailer u32 0xFFFFFFFF, u64 record count, u64 XXH3-64 of every byte
 *           before the trailer, "RVSTREND"
 * All integers are little-endian. formats/stream.md is the specification.
 * Memory use is bounded by the largest record, never by the stream length. */
#ifndef RV_STREAM_H
#define RV_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define RV_STREAM_MAGIC "RVSTREAM"
#define RV_STREAM_END_MAGIC "RVSTREND"
#define RV_STREAM_VERSION 1u
#define RV_STREAM_KIND_LEN 16
#define RV_STREAM_TRAILER_MARK 0xFFFFFFFFu
#define RV_STREAM_MAX_RECORD (1u << 30)        /* 1 GiB */
#define RV_STREAM_MAX_META (16u << 20)         /* 16 MiB */

typedef struct rv_stream_reader rv_stream_reader;
typedef struct rv_stream_writer rv_stream_writer;

/* Opens a stream for reading and reads its header. `name` is used in error
 * messages ("-" or NULL means standard input). The FILE stays owned by the
 * caller. NULL on error (message set). */
rv_stream_reader *rv_stream_reader_open(FILE *f, const char *name);

const char *rv_stream_reader_kind(const rv_stream_reader *r);
uint32_t rv_stream_reader_kind_version(const rv_stream_reader *r);
/* Metadata JSON text (NUL-terminated) and its length. */
const char *rv_stream_reader_meta(const rv_stream_reader *r, size_t *len);
const char *rv_stream_reader_name(const rv_stream_reader *r);

/* Fails with "NAME: expected a KIND stream (version ≤ V), found ..." unless
 * the stream has this kind and a kind version in [1, max_version]. */
int rv_stream_reader_expect(const rv_stream_reader *r, const char *kind, uint32_t max_version);

/* Reads the next record: returns 1 and sets *rec and *len (valid until the next
 * call), 0 at the verified end of the stream, or -1 on error. The end is
 * reported only after the trailer's count and checksum and the end of the
 * zstd frame have been checked. */
int rv_stream_read(rv_stream_reader *r, const unsigned char **rec, size_t *len);

/* Records returned so far. */
uint64_t rv_stream_reader_count(const rv_stream_reader *r);

void rv_stream_reader_close(rv_stream_reader *r);

/* Starts a stream: writes the header. `meta_json` must be a JSON object (NULL
 * means "{}"). `level` is the zstd level (0: RV_ZSTD_LEVEL from the
 * environment, else 1). The FILE stays owned by the caller. */
rv_stream_writer *rv_stream_writer_open(FILE *f, const char *name, const char *kind,
                                        uint32_t kind_version, const char *meta_json, int level);

int rv_stream_write(rv_stream_writer *w, const void *rec, size_t len);

/* Writes the trailer, ends the zstd frame and flushes the FILE. Must be called
 * for the stream to be valid; returns 0 or -1. */
int rv_stream_writer_finish(rv_stream_writer *w);

uint64_t rv_stream_writer_count(const rv_stream_writer *w);

/* Frees the writer (without finishing it: an unfinished stream has no
 * trailer and every reader rejects it as truncated). */
void rv_stream_writer_free(rv_stream_writer *w);

#endif
