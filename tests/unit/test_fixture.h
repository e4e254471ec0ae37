/* test_fixture.h — the path of a fixture, tests/fixtures/REL (fixture_file)
 * or tests/fixtures/model/REL (fixture) under $RV_ROOT (default: the
 * current directory). */
#ifndef RV_TEST_FIXTURE_H
#define RV_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

/* tests/fixtures/REL under $RV_ROOT. Four rotating buffers, so up to four
 * paths can be in use at once. */
static inline const char *fixture_file(const char *rel)
{
    static char buf[4][1024];
    static int k;
    const char *root = getenv("RV_ROOT");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/tests/fixtures/%s", root ? root : ".", rel);
    return buf[k];
}

/* tests/fixtures/model/REL (same buffers). */
static inline const char *fixture(const char *rel)
{
    char model_rel[512];   /* (fixture names are short; smaller than fixture_file's buffers) */
    snprintf(model_rel, sizeof model_rel, "model/%s", rel);
    return fixture_file(model_rel);
}

#endif
