/* test.h — the unit-test harness: each test function reports PASS or FAIL on
 * its own line ("PASS suite/name"), which tests/run.sh counts. A failed CHECK
 * prints file:line and the message and marks the current test failed; the
 * program's exit status is 1 when any test failed. */
#ifndef RV_TEST_H
#define RV_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *test_suite = "unit";
static int test_failed_now, test_failures, test_count;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            if (test_failed_now < 5) {                                            \
                fprintf(stdout, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
                fprintf(stdout, __VA_ARGS__);                                     \
                fputc('\n', stdout);                                              \
            }                                                                     \
            test_failed_now++;                                                    \
        }                                                                         \
    } while (0)

/* Like CHECK but stops the current test. */
#define REQUIRE(cond, ...)                                                        \
    do {                                                                          \
        int before_ = test_failed_now;                                            \
        CHECK(cond, __VA_ARGS__);                                                 \
        if (test_failed_now != before_)                                           \
            return;                                                               \
    } while (0)

#define RUN_TEST(fn)                                                              \
    do {                                                                          \
        test_failed_now = 0;                                                      \
        fflush(stdout);                                                           \
        fn();                                                                     \
        test_count++;                                                             \
        if (test_failed_now)                                                      \
            test_failures++;                                                      \
        printf("%s %s/%s\n", test_failed_now ? "FAIL" : "PASS", test_suite, #fn); \
        fflush(stdout);                                                           \
    } while (0)

#define TEST_EXIT() return test_failures ? 1 : 0

/* Deterministic PRNG for tests (splitmix64). */
static unsigned long long test_rng_state = 0x9e3779b97f4a7c15ull;
static inline unsigned long long test_rand(void)
{
    unsigned long long z = (test_rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
