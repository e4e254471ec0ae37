/* test_checkpoint.c — rv-train checkpoints: a save/load round trip restores
 * parameters, AdamW moments and the data position exactly; while a new
 * checkpoint is being written (the hook runs where a crash would hurt most:
 * files complete, nothing renamed) the previous one still loads; a crash
 * between the two renames leaves checkpoint.old, which loads; shapes that do
 * not match are refused. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "error.h"
#include "model.h"
#include "train_model.h"

static char out_dir[256];
static rv_train_base base;
static rv_train_net r1, l1;

static void fill(rv_train_net *n, float v)
{
    for (size_t i = 0; i < n->n_params; i++) {
        n->params[i] = v + (float)i * 1e-3f;
        n->adam_m[i] = -v;
        n->adam_v[i] = v * v + (float)i;
    }
}

static int same(const rv_train_net *a, const rv_train_net *b)
{
    return a->n_params == b->n_params && memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0 &&
           memcmp(a->adam_m, b->adam_m, a->n_params * sizeof(float)) == 0 &&
           memcmp(a->adam_v, b->adam_v, a->n_params * sizeof(float)) == 0;
}

static int nets(rv_train_net *r, rv_train_net *l, int rank)
{
    return rv_train_net_init(r, &base, rank, 8, 0x7f, 1, 1, 0) == 0 && rv_train_net_init(l, &base, rank, 8, 0x7f, 1, 2, 1) == 0;
}

static void test_round_trip(void)
{
    rv_train_net r2, l2;
    REQUIRE(nets(&r2, &l2, 4), "%s", rv_error_get());
    rv_ckpt_pos pos = {0}, want = {7, 2, 3, 31};
    CHECK(rv_checkpoint_load(out_dir, &r2, &l2, &pos, NULL) == 0, "empty dir has no checkpoint");
    fill(&r1, 0.5f);
    fill(&l1, -0.25f);
    REQUIRE(rv_checkpoint_save(out_dir, &r1, &l1, &want, "{\"a\":1}", NULL) == 0, "%s", rv_error_get());
    char *hp = NULL;
    CHECK(rv_checkpoint_load(out_dir, &r2, &l2, &pos, &hp) == 1, "%s", rv_error_get());
    CHECK(same(&r1, &r2) && same(&l1, &l2), "restored tensors differ");
    CHECK(pos.step == 7 && pos.epoch == 2 && pos.pos == 3 && pos.micro == 31, "position %ld %llu %llu", pos.step,
          (unsigned long long)pos.epoch, (unsigned long long)pos.pos);
    CHECK(hp && strcmp(hp, "{\"a\":1}") == 0, "hparams %s", hp ? hp : "(null)");
    free(hp);
    rv_train_net_free(&r2);
    rv_train_net_free(&l2);
}

/* During the second save, the first checkpoint must still load. */
static int hook_ok = -1;
static void mid_save(void)
{
    rv_train_net r2, l2;
    rv_ckpt_pos pos;
    hook_ok = nets(&r2, &l2, 4) && rv_checkpoint_load(out_dir, &r2, &l2, &pos, NULL) == 1 && pos.step == 7 &&
              same(&r1, &r2);
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/checkpoint.tmp/state.safetensors", out_dir);
    hook_ok = hook_ok && stat(p, &st) == 0;
    rv_train_net_free(&r2);
    rv_train_net_free(&l2);
}

static void test_previous_valid_during_save(void)
{
    rv_ckpt_pos next = {9, 2, 5, 39};
    rv_train_net r3, l3;
    REQUIRE(nets(&r3, &l3, 4), "%s", rv_error_get());
    fill(&r3, 2.0f);
    fill(&l3, 3.0f);
    REQUIRE(rv_checkpoint_save(out_dir, &r3, &l3, &next, "{}", mid_save) == 0, "%s", rv_error_get());
    CHECK(hook_ok == 1, "previous checkpoint not loadable while the next one was written");
    /* a crash between the renames: only checkpoint.old exists */
    char cur[512], old[512];
    snprintf(cur, sizeof cur, "%s/checkpoint", out_dir);
    snprintf(old, sizeof old, "%s/checkpoint.old", out_dir);
    REQUIRE(rename(cur, old) == 0, "rename");
    rv_train_net r2, l2;
    rv_ckpt_pos pos;
    REQUIRE(nets(&r2, &l2, 4), "%s", rv_error_get());
    CHECK(rv_checkpoint_load(out_dir, &r2, &l2, &pos, NULL) == 1 && pos.step == 9 && same(&r2, &r3) &&
              same(&l2, &l3), "checkpoint.old not used");
    /* the next save cleans up and works */
    CHECK(rv_checkpoint_save(out_dir, &r1, &l1, &next, "{}", NULL) == 0, "%s", rv_error_get());
    struct stat st;
    CHECK(stat(old, &st) != 0, "checkpoint.old left behind");
    /* other shapes are refused */
    rv_train_net r4, l4;
    REQUIRE(nets(&r4, &l4, 2), "%s", rv_error_get());
    CHECK(rv_checkpoint_load(out_dir, &r4, &l4, &pos, NULL) < 0 && strstr(rv_error_get(), "retriever.params"),
          "rank mismatch accepted: %s", rv_error_get());
    rv_train_net_free(&r2);
    rv_train_net_free(&l2);
    rv_train_net_free(&r3);
    rv_train_net_free(&l3);
    rv_train_net_free(&r4);
    rv_train_net_free(&l4);
}

int main(void)
{
    const char *root = getenv("RV_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/model/llama_tied", root ? root : ".");
    rv_model *m = rv_model_load(path);
    if (!m || rv_train_base_init(&base, m) != 0 || !nets(&r1, &l1, 4)) {
        printf("FAIL unit/checkpoint_setup: %s\n", rv_error_get());
        return 1;
    }
    snprintf(out_dir, sizeof out_dir, "/tmp/rv_test_ckpt_%d", (int)getpid());
    mkdir(out_dir, 0777);
    RUN_TEST(test_round_trip);
    RUN_TEST(test_previous_valid_during_save);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", out_dir);
    rv_train_net_free(&r1);
    rv_train_net_free(&l1);
    rv_train_base_free(&base);
    rv_model_free(m);
    TEST_EXIT();
}
