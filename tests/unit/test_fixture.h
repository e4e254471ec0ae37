/* test_fixture.h — the path of a model fixture, tests/fixtures/model/REL
 * under $RV_ROOT (default: the current directory). */
#ifndef RV_TEST_FIXTURE_H
#define RV_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

/* Four rotating buffers, so up to four paths can be in use at once. */
static inline const char *fixture(const char *rel)
{
    static char buf[4][1024];
    static int k;
    const char *root = getenv("RV_ROOT");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/tests/fixtures/model/%s", root ? root : ".", rel);
    return buf[k];
}

#endif
