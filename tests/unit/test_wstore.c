/* Unit tests: the RocksDB window store, its write cache, apply/discard,
 * restore batches, identity checks and corruption handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "wstore.h"
#include <fcntl.h>

#include <pthread.h>
#include <time.h>

/* a held lock is waited for 300 ms here, not the default 30 s */
static const rill_wstore_open_opts_t short_wait = {300, 1, NULL};
#define OPEN_LOCKED(d, id, w) rill_wstore_open_opts(d, id, &short_wait, w, err, sizeof(err))

static char dir[256];
static char err[512];

static int setup(void **s) {
        (void)s;
        snprintf(dir, sizeof(dir), "/tmp/rill-wstore-test-XXXXXX");
        assert_non_null(mkdtemp(dir));
        strcat(dir, "/store");
        return 0;
}

static int teardown(void **s) {
        (void)s;
        char parent[256];
        snprintf(parent, sizeof(parent), "%s", dir);
        *strrchr(parent, '/') = '\0';
        rill_wstore_wipe(parent, err, sizeof(err));
        return 0;
}

static rill_wstore_t *open_store(const char *identity, int *wiped) {
        rill_wstore_t *ws = rill_wstore_open(dir, identity, wiped, err, sizeof(err));
        assert_non_null(ws);
        return ws;
}

static void cache_then_apply_then_reopen(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|0", &wiped);
        assert_int_equal(wiped, 0);
        assert_int_equal(rill_wstore_changelog_offset(ws), -1);
        rill_agg_t a = {100, 1, 5, 5}, out;
        rill_wstore_put(ws, 0, "s1", 2, &a);
        assert_int_equal(rill_wstore_get(ws, 0, "s1", 2, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 100);
        assert_int_equal(rill_wstore_dirty_count(ws), 1);
        assert_int_equal(rill_wstore_apply(ws, 7, 5, err, sizeof(err)), 0);
        assert_int_equal(rill_wstore_dirty_count(ws), 0);
        /* discard drops only uncommitted changes */
        a.sum = 999;
        rill_wstore_put(ws, 0, "s1", 2, &a);
        rill_wstore_discard(ws);
        assert_int_equal(rill_wstore_get(ws, 0, "s1", 2, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 100);
        rill_wstore_close(ws);
        ws = open_store("app|cl|0", &wiped);
        assert_int_equal(wiped, 0);
        assert_int_equal(rill_wstore_changelog_offset(ws), 7);
        assert_int_equal(rill_wstore_stream_time(ws), 5);
        assert_int_equal(rill_wstore_get(ws, 0, "s1", 2, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 100);
        rill_wstore_close(ws);
}

/* the input offset of the last applied commit survives a reopen; a staged
 * one that is discarded, or an apply without one (a restore), keeps it */
static void input_offset_of_applied_commits(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|0", &wiped);
        assert_int_equal(rill_wstore_input_offset(ws), -1);
        rill_agg_t a = {100, 1, 5, 5};
        rill_wstore_put(ws, 0, "s1", 2, &a);
        rill_wstore_put_input_offset(ws, 42);
        assert_int_equal(rill_wstore_input_offset(ws), -1); /* staged only */
        assert_int_equal(rill_wstore_apply(ws, 7, 5, err, sizeof(err)), 0);
        assert_int_equal(rill_wstore_input_offset(ws), 42);
        rill_wstore_put_input_offset(ws, 50);
        rill_wstore_discard(ws);
        assert_int_equal(rill_wstore_apply(ws, 9, 5, err, sizeof(err)), 0);
        assert_int_equal(rill_wstore_input_offset(ws), 42);
        rill_wstore_close(ws);
        ws = open_store("app|cl|0", &wiped);
        assert_int_equal(wiped, 0);
        assert_int_equal(rill_wstore_input_offset(ws), 42);
        assert_int_equal(rill_wstore_changelog_offset(ws), 9);
        rill_wstore_close(ws);
}

static void count_dirty(void *opaque, int64_t wstart, const char *key, size_t len,
                        const void *agg) {
        (void)wstart, (void)key, (void)len, (void)agg;
        (*(int *)opaque)++;
}

/* Committed windows stay cached as clean entries: reads see them, the
 * changelog view (foreach_dirty) and the next apply do not; an abort still
 * drops exactly the uncommitted changes, and deleted windows stay deleted. */
static void clean_entries_across_commits(void **s) {
        (void)s;
        int wiped, n;
        rill_wstore_t *ws = open_store("app|cl|4", &wiped);
        rill_agg_t a = {1, 1, 0, 0}, out;
        rill_wstore_put(ws, 0, "a", 1, &a);
        rill_wstore_put(ws, 0, "b", 1, &a);
        assert_int_equal(rill_wstore_apply(ws, 1, 0, err, sizeof(err)), 0);
        n = 0;
        rill_wstore_foreach_dirty(ws, count_dirty, &n);
        assert_int_equal(n, 0);
        assert_int_equal(rill_wstore_dirty_count(ws), 0);
        /* change one, delete the other, then abort: both as committed */
        a.sum = 2;
        rill_wstore_put(ws, 0, "a", 1, &a);
        rill_wstore_delete(ws, 0, "b", 1);
        n = 0;
        rill_wstore_foreach_dirty(ws, count_dirty, &n);
        assert_int_equal(n, 2);
        rill_wstore_discard(ws);
        assert_int_equal(rill_wstore_get(ws, 0, "a", 1, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 1);
        assert_int_equal(rill_wstore_get(ws, 0, "b", 1, &out, err, sizeof(err)), 1);
        /* commit a change and a deletion: read back from the cache and after reopening */
        rill_wstore_put(ws, 0, "a", 1, &a);
        rill_wstore_delete(ws, 0, "b", 1);
        assert_int_equal(rill_wstore_apply(ws, 2, 0, err, sizeof(err)), 0);
        assert_int_equal(rill_wstore_get(ws, 0, "a", 1, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 2);
        assert_int_equal(rill_wstore_get(ws, 0, "b", 1, &out, err, sizeof(err)), 0);
        /* a clean entry is not rewritten: only the changed window is dirty */
        a.sum = 3;
        rill_wstore_put(ws, 0, "c", 1, &a);
        assert_int_equal(rill_wstore_dirty_count(ws), 1);
        assert_int_equal(rill_wstore_apply(ws, 3, 0, err, sizeof(err)), 0);
        rill_wstore_close(ws);
        ws = open_store("app|cl|4", &wiped);
        assert_int_equal(rill_wstore_get(ws, 0, "a", 1, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 2);
        assert_int_equal(rill_wstore_get(ws, 0, "b", 1, &out, err, sizeof(err)), 0);
        assert_int_equal(rill_wstore_get(ws, 0, "c", 1, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 3);
        rill_wstore_close(ws);
}

static void closed_merges_cache_over_db(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|1", &wiped);
        rill_agg_t a = {1, 1, 0, 0};
        rill_wstore_put(ws, 0, "b", 1, &a);
        rill_wstore_put(ws, 0, "a", 1, &a);
        rill_wstore_put(ws, 60000, "a", 1, &a);
        rill_wstore_put(ws, 120000, "a", 1, &a);
        assert_int_equal(rill_wstore_apply(ws, 3, 0, err, sizeof(err)), 0);
        a.sum = 50;
        rill_wstore_put(ws, 0, "a", 1, &a);  /* cache overrides db */
        rill_wstore_delete(ws, 0, "b", 1);   /* cache deletion hides db */
        rill_wstore_put(ws, 60000, "c", 1, &a); /* cache only */
        rill_wlist_t l = {0};
        assert_int_equal(rill_wstore_closed(ws, 120000, &l, err, sizeof(err)), 0);
        assert_int_equal(l.cnt, 3);
        assert_int_equal(l.v[0].wstart, 0);
        assert_memory_equal(l.v[0].key, "a", 1);
        assert_int_equal(((rill_agg_t *)l.v[0].state)->sum, 50);
        assert_int_equal(l.v[1].wstart, 60000);
        assert_memory_equal(l.v[1].key, "a", 1);
        assert_int_equal(l.v[2].wstart, 60000);
        assert_memory_equal(l.v[2].key, "c", 1);
        rill_wlist_free(&l);
        rill_wstore_close(ws);
}

static void restore_batches_and_stream_time(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|2", &wiped);
        unsigned char k[64], v[64], st[8];
        rill_agg_t a = {10, 2, 1, 2};
        size_t kl = rill_wkey_encode(60000, "s", 1, k), vl = rill_agg_encode(&a, v, sizeof(v));
        assert_int_equal(rill_wstore_restore_add(ws, k, kl, v, vl), 0);
        rill_be64_put(st, 61000);
        assert_int_equal(rill_wstore_restore_add(ws, RILL_STREAM_TIME_KEY, 1, st, 8), 0);
        size_t kl2 = rill_wkey_encode(0, "gone", 4, k + 32);
        assert_int_equal(rill_wstore_restore_add(ws, k + 32, kl2, v, vl), 0);
        assert_int_equal(rill_wstore_restore_add(ws, k + 32, kl2, NULL, 0), 0); /* tombstone */
        /* not a changelog record: refused, nothing cached */
        assert_int_equal(rill_wstore_restore_add(ws, "x", 1, v, vl), -1);
        assert_int_equal(rill_wstore_restore_add(ws, k, kl, "\xc1", 1), -1);
        assert_int_equal(rill_wstore_restore_flush(ws, 42, err, sizeof(err)), 0);
        rill_wstore_close(ws);
        ws = open_store("app|cl|2", &wiped);
        rill_agg_t out;
        assert_int_equal(rill_wstore_changelog_offset(ws), 42);
        assert_int_equal(rill_wstore_stream_time(ws), 61000);
        assert_int_equal(rill_wstore_get(ws, 60000, "s", 1, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 10);
        assert_int_equal(rill_wstore_get(ws, 0, "gone", 4, &out, err, sizeof(err)), 0);
        rill_wstore_close(ws);
}

/* Many changes per window in a scrambled order, over several batches: the
 * store ends with each window's last change (the batch is deduplicated and
 * written sorted). */
static void restore_last_change_wins(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|3", &wiped);
        enum { KEYS = 500, ROUNDS = 6 };
        unsigned char k[64], v[64];
        char name[16];
        int64_t off = 0;
        for (int r = 0; r < ROUNDS; r++) {
                for (int i = 0; i < KEYS; i++) {
                        int j = (i * 7919 + r * 31) % KEYS; /* a different order each round */
                        snprintf(name, sizeof(name), "s%d", j);
                        size_t kl = rill_wkey_encode((j % 5) * 60000 - 120000, name, strlen(name), k);
                        rill_agg_t a = {j * 100 + r, r + 1, 0, 0};
                        size_t vl = rill_agg_encode(&a, v, sizeof(v));
                        /* every 10th key ends deleted in the last round */
                        int del = r == ROUNDS - 1 && j % 10 == 0;
                        assert_int_equal(rill_wstore_restore_add(ws, k, kl, del ? NULL : v, del ? 0 : vl), 0);
                        if (++off % 700 == 0)
                                assert_int_equal(rill_wstore_restore_flush(ws, off, err, sizeof(err)), 0);
                }
        }
        assert_int_equal(rill_wstore_restore_flush(ws, off, err, sizeof(err)), 0);
        rill_wstore_close(ws);
        ws = open_store("app|cl|3", &wiped);
        assert_int_equal(rill_wstore_changelog_offset(ws), KEYS * ROUNDS);
        for (int j = 0; j < KEYS; j++) {
                rill_agg_t out;
                snprintf(name, sizeof(name), "s%d", j);
                int found = rill_wstore_get(ws, (j % 5) * 60000 - 120000, name, strlen(name), &out,
                                            err, sizeof(err));
                if (j % 10 == 0) {
                        assert_int_equal(found, 0);
                } else {
                        assert_int_equal(found, 1);
                        assert_int_equal(out.sum, j * 100 + ROUNDS - 1);
                        assert_int_equal(out.count, ROUNDS);
                }
        }
        /* closing returns windows in store order: by start, then key */
        rill_wlist_t l = {0};
        assert_int_equal(rill_wstore_closed(ws, 1000000, &l, err, sizeof(err)), 0);
        assert_int_equal(l.cnt, KEYS - KEYS / 10);
        for (size_t i = 1; i < l.cnt; i++) {
                rill_wentry_t *a = &l.v[i - 1], *b = &l.v[i];
                size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
                int c = memcmp(a->key, b->key, n);
                assert_true(a->wstart < b->wstart ||
                            (a->wstart == b->wstart && (c < 0 || (!c && a->key_len < b->key_len))));
        }
        rill_wlist_free(&l);
        rill_wstore_close(ws);
}

static void other_identity_is_wiped(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|3", &wiped);
        rill_agg_t a = {1, 1, 0, 0};
        rill_wstore_put(ws, 0, "x", 1, &a);
        assert_int_equal(rill_wstore_apply(ws, 9, 0, err, sizeof(err)), 0);
        rill_wstore_close(ws);
        ws = open_store("otherapp|cl|3", &wiped);
        assert_int_equal(wiped, 1);
        assert_int_equal(rill_wstore_changelog_offset(ws), -1);
        rill_agg_t out;
        assert_int_equal(rill_wstore_get(ws, 0, "x", 1, &out, err, sizeof(err)), 0);
        rill_wstore_close(ws);
}

static void corrupt_files_are_wiped(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|4", &wiped);
        rill_agg_t a = {1, 1, 0, 0};
        rill_wstore_put(ws, 0, "x", 1, &a);
        assert_int_equal(rill_wstore_apply(ws, 9, 0, err, sizeof(err)), 0);
        rill_wstore_close(ws);
        /* clobber every file of the store: CURRENT, MANIFEST, WAL, OPTIONS */
        char cmd[600];
        snprintf(cmd, sizeof(cmd),
                 "for f in %s/*; do printf 'garbage garbage garbage' > \"$f\"; done", dir);
        assert_int_equal(system(cmd), 0);
        ws = open_store("app|cl|4", &wiped);
        assert_int_equal(wiped, 1);
        assert_int_equal(rill_wstore_changelog_offset(ws), -1);
        rill_wstore_close(ws);
}

/* Write one window and commit it at offset 9, as a task's first commit. */
static void commit_one(rill_wstore_t *ws) {
        rill_agg_t a = {42, 1, 0, 0};
        rill_wstore_put(ws, 0, "x", 1, &a);
        assert_int_equal(rill_wstore_apply(ws, 9, 0, err, sizeof(err)), 0);
}

/* The store holds what commit_one wrote: not wiped, not lost. */
static void assert_committed_one(rill_wstore_t *ws) {
        rill_agg_t out;
        assert_int_equal(rill_wstore_changelog_offset(ws), 9);
        assert_int_equal(rill_wstore_get(ws, 0, "x", 1, &out, err, sizeof(err)), 1);
        assert_int_equal(out.sum, 42);
}

static void clobber(const char *glob) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd),
                 "for f in %s/%s; do printf 'garbage garbage garbage' > \"$f\"; done", dir, glob);
        assert_int_equal(system(cmd), 0);
}

static void corrupt_current_is_wiped(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|4", &wiped);
        commit_one(ws);
        rill_wstore_close(ws);
        clobber("CURRENT");
        ws = open_store("app|cl|4", &wiped);
        assert_int_equal(wiped, 1);
        assert_int_equal(rill_wstore_changelog_offset(ws), -1);
        rill_wstore_close(ws);
}

static void corrupt_manifest_is_wiped(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|4", &wiped);
        commit_one(ws);
        rill_wstore_close(ws);
        clobber("MANIFEST-*");
        ws = open_store("app|cl|4", &wiped);
        assert_int_equal(wiped, 1);
        assert_int_equal(rill_wstore_changelog_offset(ws), -1);
        rill_wstore_close(ws);
}

static void missing_manifest_is_wiped(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|4", &wiped);
        commit_one(ws);
        rill_wstore_close(ws);
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -f %s/MANIFEST-*", dir);
        assert_int_equal(system(cmd), 0);
        ws = open_store("app|cl|4", &wiped);
        assert_int_equal(wiped, 1);
        assert_int_equal(rill_wstore_changelog_offset(ws), -1);
        rill_wstore_close(ws);
}

/* A partition moving between two stream threads while the old owner still
 * has its store open: the new owner's open meets RocksDB's lock. It must
 * fail (or wait), never delete the files under the live database. */
static void lock_held_in_process_is_not_wiped(void **s) {
        (void)s;
        int wiped = 0;
        rill_wstore_t *ws = open_store("app|cl|5", &wiped);
        commit_one(ws);
        int wiped2 = 0;
        rill_wstore_t *second = OPEN_LOCKED(dir, "app|cl|5", &wiped2);
        assert_null(second);
        assert_int_equal(wiped2, 0);
        assert_non_null(strstr(err, dir));
        assert_non_null(strstr(err, "lock"));
        /* the first owner's data is still on disk */
        assert_committed_one(ws);
        rill_wstore_close(ws);
        ws = open_store("app|cl|5", &wiped);
        assert_int_equal(wiped, 0);
        assert_committed_one(ws);
        rill_wstore_close(ws);
}

/* Too many open files is transient: the open fails (after its bounded
 * retries) and the store is left as it was. In a child, so the lowered
 * RLIMIT_NOFILE does not touch the other tests. */
static void too_many_open_files_is_not_wiped(void **s) {
        (void)s;
        int wiped = 0;
        rill_wstore_t *ws = open_store("app|cl|6", &wiped);
        commit_one(ws);
        rill_wstore_close(ws);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct rlimit old, low;
                getrlimit(RLIMIT_NOFILE, &old);
                /* RLIMIT_NOFILE bounds fd numbers, not their count: close
                 * the ones inherited (this child's copies only), so the
                 * limit leaves RocksDB just a few descriptors */
                for (int fd = 3; fd < 1024; fd++)
                        close(fd);
                low = old;
                low.rlim_cur = 3 + 3;
                setrlimit(RLIMIT_NOFILE, &low);
                int w = 0;
                char e[512] = "";
                rill_wstore_t *c = rill_wstore_open(dir, "app|cl|6", &w, e, sizeof(e));
                setrlimit(RLIMIT_NOFILE, &old);
                if (w) {
                        fprintf(stderr, "the store was wiped (err=%s)\n", e);
                        _exit(1);
                }
                if (c) /* the limit was not low enough: not this test's case */
                        _exit(3);
                if (!strstr(e, "Too many open files")) {
                        fprintf(stderr, "wiped=%d err=%s\n", w, e);
                        _exit(1);
                }
                _exit(0);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        ws = open_store("app|cl|6", &wiped);
        assert_int_equal(wiped, 0);
        assert_committed_one(ws);
        rill_wstore_close(ws);
}

/* Window keys never reach the meta keys (0xff...): a stream time at the end
 * of int64 closes the windows without reading the metadata as a window, and
 * a window start in the meta-key range is refused, not written over
 * changelog_offset. */
static void meta_keys_out_of_window_range(void **s) {
        (void)s;
        int wiped;
        rill_wstore_t *ws = open_store("app|cl|7", &wiped);
        commit_one(ws);
        rill_wlist_t l = {0};
        assert_int_equal(rill_wstore_closed(ws, INT64_MAX, &l, err, sizeof(err)), 0);
        assert_int_equal(l.cnt, 1);
        rill_wlist_free(&l);
        /* the window whose key is exactly the changelog_offset meta key */
        const unsigned char meta[] = "\xff" "changelog_offset";
        int64_t wstart = (int64_t)(rill_be64_get(meta) ^ 0x8000000000000000ULL);
        rill_agg_t a = {1, 1, 0, 0};
        rill_wstore_put(ws, wstart, (const char *)meta + 8, sizeof(meta) - 1 - 8, &a);
        assert_int_equal(rill_wstore_apply(ws, 10, 0, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "meta"));
        rill_wstore_discard(ws);
        rill_wstore_close(ws);
        ws = open_store("app|cl|7", &wiped);
        assert_int_equal(wiped, 0);
        assert_committed_one(ws);
        rill_wstore_close(ws);
}

/* The old owner lets go while the new one waits: the new one opens the same
 * files, not an empty store. */
static void *close_later(void *ws) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        rill_wstore_close(ws);
        return NULL;
}

static void lock_released_while_waiting(void **s) {
        (void)s;
        int wiped = 0;
        rill_wstore_t *ws = open_store("app|cl|5", &wiped);
        commit_one(ws);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, close_later, ws), 0);
        const rill_wstore_open_opts_t wait5s = {5000, 1, NULL};
        rill_wstore_t *second = rill_wstore_open_opts(dir, "app|cl|5", &wait5s, &wiped, err,
                                                      sizeof(err));
        pthread_join(th, NULL);
        if (!second)
                fail_msg("second open failed: %s", err);
        assert_int_equal(wiped, 0);
        assert_committed_one(second);
        rill_wstore_close(second);
}

/* memory.limit.mb's write-cache share: clean windows leave the cache once the
 * process's write caches hold more than it, reads over it are not cached,
 * and every value stays right (it comes from RocksDB instead). */
static void write_cache_bounded_by_budget(void **s) {
        (void)s;
        int wiped;
        const size_t budget = 256 * 1024;
        rill_wstore_memory_t m = {8 << 20, 1 << 20, 2, budget};
        rill_wstore_set_memory(&m);
        rill_wstore_t *ws = open_store("app|cl|9", &wiped);
        size_t base = rill_wstore_cache_bytes();
        rill_agg_t a = {0, 1, 0, 0}, out;
        char key[32];
        for (int round = 0; round < 3; round++) {
                for (int i = 0; i < 20000; i++) { /* ~2.4 MB of entries, 10x the budget */
                        int n = snprintf(key, sizeof(key), "seller-%d", i);
                        if (round && rill_wstore_get(ws, 0, key, (size_t)n, &out, err, sizeof(err)) == 1)
                                a.sum = out.sum + 1;
                        else
                                a.sum = 1;
                        rill_wstore_put(ws, 0, key, (size_t)n, &a);
                }
                assert_true(rill_wstore_cache_over_budget()); /* dirty: cannot leave */
                assert_int_equal(rill_wstore_apply(ws, round + 1, 0, err, sizeof(err)), 0);
                /* committed: the clean entries went, down to the empty table */
                assert_true(rill_wstore_cache_bytes() - base <= budget);
                assert_false(rill_wstore_cache_over_budget());
        }
        for (int i = 0; i < 20000; i += 997) {
                int n = snprintf(key, sizeof(key), "seller-%d", i);
                assert_int_equal(rill_wstore_get(ws, 0, key, (size_t)n, &out, err, sizeof(err)), 1);
                assert_int_equal(out.sum, 3);
        }
        /* reads of committed windows over the budget are not cached */
        for (int i = 0; i < 20000; i++) {
                int n = snprintf(key, sizeof(key), "seller-%d", i);
                assert_int_equal(rill_wstore_get(ws, 0, key, (size_t)n, &out, err, sizeof(err)), 1);
        }
        assert_true(rill_wstore_cache_bytes() - base <= budget + 4096);
        rill_wstore_close(ws);
        assert_int_equal(rill_wstore_cache_bytes(), 0);
        rill_wstore_memory_t d = {64 << 20, 8 << 20, 2, (size_t)256 << 20};
        rill_wstore_set_memory(&d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(cache_then_apply_then_reopen, setup, teardown),
            cmocka_unit_test_setup_teardown(input_offset_of_applied_commits, setup, teardown),
            cmocka_unit_test_setup_teardown(closed_merges_cache_over_db, setup, teardown),
            cmocka_unit_test_setup_teardown(clean_entries_across_commits, setup, teardown),
            cmocka_unit_test_setup_teardown(restore_batches_and_stream_time, setup, teardown),
            cmocka_unit_test_setup_teardown(restore_last_change_wins, setup, teardown),
            cmocka_unit_test_setup_teardown(other_identity_is_wiped, setup, teardown),
            cmocka_unit_test_setup_teardown(corrupt_files_are_wiped, setup, teardown),
            cmocka_unit_test_setup_teardown(corrupt_current_is_wiped, setup, teardown),
            cmocka_unit_test_setup_teardown(corrupt_manifest_is_wiped, setup, teardown),
            cmocka_unit_test_setup_teardown(missing_manifest_is_wiped, setup, teardown),
            cmocka_unit_test_setup_teardown(lock_held_in_process_is_not_wiped, setup, teardown),
            cmocka_unit_test_setup_teardown(too_many_open_files_is_not_wiped, setup, teardown),
            cmocka_unit_test_setup_teardown(meta_keys_out_of_window_range, setup, teardown),
            cmocka_unit_test_setup_teardown(lock_released_while_waiting, setup, teardown),
            cmocka_unit_test_setup_teardown(write_cache_bounded_by_budget, setup, teardown)};
        return cmocka_run_group_tests(tests, NULL, NULL);
}
