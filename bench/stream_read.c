/* stream_read.c — benchmark helper: reads a doc stream through lib/stream and
 * decodes every record (what a consuming tool does), printing records, payload
 * bytes and seconds. Usage: stream_read FILE */
#include "error.h"
#include "progress.h"
#include "records.h"
#include "stream.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: stream_read FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    double t0 = rv_now();
    rv_stream_reader *r = rv_stream_reader_open(f, argv[1]);
    if (!r) {
        fprintf(stderr, "%s\n", rv_error_get());
        return 1;
    }
    const unsigned char *rec;
    size_t len;
    unsigned long long bytes = 0, text = 0;
    int rc;
    while ((rc = rv_stream_read(r, &rec, &len)) == 1) {
        rv_doc d;
        if (rv_doc_decode(rec, len, &d) < 0)
            break;
        bytes += len;
        text += d.text.len;
    }
    if (rc < 0) {
        fprintf(stderr, "%s\n", rv_error_get());
        return 1;
    }
    double t = rv_now() - t0;
    printf("%llu %llu %.6f\n", (unsigned long long)rv_stream_reader_count(r), bytes, t);
    rv_stream_reader_close(r);
    fclose(f);
    return text == 0 && bytes > 0;
}
