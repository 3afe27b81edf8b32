/*
 * wstore.c -- the window store: RocksDB under an in-memory write cache.
 *
 * Invariant: RocksDB only ever holds state that a committed Kafka
 * transaction also put in the changelog, and the meta key "changelog_offset"
 * written in the same WriteBatch says up to where. So after any crash the
 * store is a prefix of the changelog, and restore replays only the tail.
 *
 * The cache is a chained hash table of windows: the ones changed since the
 * last commit (dirty: value or deletion) and the ones read or written before
 * it (clean: the same as RocksDB). A commit (apply) writes the dirty ones and
 * keeps them as clean, so a window touched in every commit interval is read
 * from RocksDB once, not once per commit (10,000 sellers, 270 commits: 2.7M
 * memtable lookups saved). Clean entries are dropped when the cache holds
 * more than CACHE_MAX windows; an abort (discard) empties it.
 *
 * Memory (memory.limit.mb, engine/memory.h): every store of the process
 * shares one RocksDB block cache and one write-cache budget, set once by
 * rill_wstore_set_memory before the first store opens. The write cache counts
 * its bytes process-wide (entries and bucket arrays); over the budget, a
 * commit drops the store's clean entries and a read caches nothing. Dirty
 * entries cannot leave before their commit (RocksDB holds committed state
 * only), so they are bounded by the windows touched in one commit interval;
 * beyond the budget they are logged (write_cache_over_budget), and
 * rill_wstore_cache_over_budget() tells a caller to commit early.
 *
 * Meta keys start with 0xff; window keys start with the big-endian window
 * start with its sign bit flipped, so every real window key sorts below 0xff
 * unless its start is beyond year 292 million -- impossible after the event
 * time validation (engine/window.h bounds event times to years 1..9999), and
 * refused here anyway: apply never writes a window key in that range, and
 * closed() never scans into it, whatever bound it is given.
 */
#include "wstore.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <ftw.h>
#include <stdatomic.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define META_OFFSET "\xff" "changelog_offset"
#define META_STREAM_TIME "\xff" "stream_time"
#define META_SOURCES "\xff" "sources"
#define META_CLOSED_BOUND "\xff" "closed_bound"
#define META_IDENTITY "\xff" "identity"
#define META_INPUT_OFFSET "\xff" "input_offset"
/* Window starts from here up encode to keys starting with 0xff: the meta
 * keys' range. None is ever written (apply refuses them) or scanned
 * (closed stops below 0xff). Same value as engine/window.h's
 * RILL_WINDOW_START_KEY_LIMIT. */
#define WSTART_LIMIT 0x7f00000000000000LL
#define MAX_KEY 4096
#define CACHE_MAX 50000 /* windows per store before clean entries are dropped */

typedef struct centry {
        struct centry *next;
        uint64_t hash;
        int64_t wstart;
        char *key; /* after the state, in the same allocation */
        size_t key_len;
        int deleted;
        int dirty; /* changed since the last commit */
        _Alignas(16) unsigned char state[]; /* the codec's size */
} centry_t;

struct rill_wstore {
        rocksdb_t *db;
        rocksdb_options_t *opts;
        rocksdb_readoptions_t *ropts;
        rocksdb_writeoptions_t *wopts;
        int64_t changelog_offset;
        int64_t stream_time;
        int64_t closed_bound, closed_bound_staged; /* INT64_MIN: unknown / none staged */
        int64_t input_offset, input_offset_staged; /* -1: unknown / none staged */
        char *sources, *sources_staged; /* committed / staged RILL_SOURCES_KEY value */
        size_t sources_len, sources_staged_len;
        centry_t **buckets;
        size_t nbuckets, ncached, ndirty;
        size_t cache_bytes; /* this store's part of write_cache_used */
        const rill_state_codec_t *codec;
};

/* ---- process-wide memory settings ----------------------------------------------
 * Written by rill_wstore_set_memory on the application thread before any
 * store opens, read-only afterwards; write_cache_used is shared by every
 * stream thread (atomic). */

static size_t block_cache_bytes = 64 << 20, write_buffer_bytes = 8 << 20;
static int max_write_buffers = 2;
static size_t write_cache_budget = (size_t)256 << 20;
static atomic_size_t write_cache_used;
static atomic_llong over_budget_logged_ms;

static rocksdb_cache_t *block_cache;
static pthread_once_t block_cache_once = PTHREAD_ONCE_INIT;
static void block_cache_create(void) { block_cache = rocksdb_cache_create_lru(block_cache_bytes); }

static rocksdb_cache_t *shared_block_cache(void) {
        pthread_once(&block_cache_once, block_cache_create);
        return block_cache;
}

void rill_wstore_set_memory(const rill_wstore_memory_t *m) {
        block_cache_bytes = m->block_cache_bytes;
        write_buffer_bytes = m->write_buffer_bytes;
        max_write_buffers = m->max_write_buffers;
        write_cache_budget = m->write_cache_bytes;
        if (block_cache) /* already made by an earlier store (tests) */
                rocksdb_cache_set_capacity(block_cache, block_cache_bytes);
}

size_t rill_wstore_cache_bytes(void) { return atomic_load(&write_cache_used); }

int rill_wstore_cache_over_budget(void) {
        return atomic_load(&write_cache_used) > write_cache_budget;
}

static size_t entry_cost(const rill_wstore_t *ws, size_t key_len) {
        return sizeof(centry_t) + ws->codec->size + key_len + 16;
}

static void cache_account(rill_wstore_t *ws, size_t add, size_t sub) {
        ws->cache_bytes += add;
        ws->cache_bytes -= sub;
        if (add)
                atomic_fetch_add(&write_cache_used, add);
        if (sub)
                atomic_fetch_sub(&write_cache_used, sub);
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Dirty entries over the budget: say so, at most once a minute a process. */
static void over_budget_check(rill_wstore_t *ws) {
        size_t used = atomic_load(&write_cache_used);
        if (used <= write_cache_budget)
                return;
        long long t = now_ms(), last = atomic_load(&over_budget_logged_ms);
        if (t - last < 60000 || !atomic_compare_exchange_strong(&over_budget_logged_ms, &last, t))
                return;
        rill_log(RILL_LOG_WARN, "write_cache_over_budget",
                 "used_bytes=%zu budget_bytes=%zu dirty_windows=%zu hint=\"changes since the last "
                 "commit exceed the write cache's share of memory.limit.mb; lower "
                 "commit.interval.ms or raise memory.limit.mb\"",
                 used, write_cache_budget, ws->ndirty);
}

/* ---- the write cache ---------------------------------------------------------- */

static uint64_t hash_key(int64_t wstart, const char *key, size_t len) {
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)wstart; /* FNV-1a */
        for (size_t i = 0; i < len; i++)
                h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
        return h;
}

static centry_t *cache_find(rill_wstore_t *ws, uint64_t h, int64_t wstart, const char *key,
                            size_t len) {
        for (centry_t *e = ws->buckets[h & (ws->nbuckets - 1)]; e; e = e->next)
                if (e->hash == h && e->wstart == wstart && e->key_len == len &&
                    !memcmp(e->key, key, len))
                        return e;
        return NULL;
}

static void cache_grow(rill_wstore_t *ws) {
        size_t n = ws->nbuckets * 2;
        centry_t **b = calloc(n, sizeof(*b));
        if (!b)
                return; /* longer chains, still correct */
        cache_account(ws, n * sizeof(*b), ws->nbuckets * sizeof(*b));
        for (size_t i = 0; i < ws->nbuckets; i++) {
                centry_t *e = ws->buckets[i], *next;
                for (; e; e = next) {
                        next = e->next;
                        e->next = b[e->hash & (n - 1)];
                        b[e->hash & (n - 1)] = e;
                }
        }
        free(ws->buckets);
        ws->buckets = b;
        ws->nbuckets = n;
}

static centry_t *cache_upsert(rill_wstore_t *ws, int64_t wstart, const char *key, size_t len) {
        uint64_t h = hash_key(wstart, key, len);
        centry_t *e = cache_find(ws, h, wstart, key, len);
        if (e)
                return e;
        if (ws->ncached >= ws->nbuckets)
                cache_grow(ws);
        e = calloc(1, sizeof(*e) + ws->codec->size + len);
        e->key = (char *)e->state + ws->codec->size;
        memcpy(e->key, key, len);
        e->key_len = len;
        e->wstart = wstart;
        e->hash = h;
        e->next = ws->buckets[h & (ws->nbuckets - 1)];
        ws->buckets[h & (ws->nbuckets - 1)] = e;
        ws->ncached++;
        cache_account(ws, entry_cost(ws, len), 0);
        return e;
}

static void cache_clear(rill_wstore_t *ws) {
        for (size_t i = 0; i < ws->nbuckets; i++) {
                centry_t *e = ws->buckets[i], *next;
                for (; e; e = next) {
                        next = e->next;
                        cache_account(ws, 0, entry_cost(ws, e->key_len));
                        free(e);
                }
                ws->buckets[i] = NULL;
        }
        ws->ncached = ws->ndirty = 0;
}

#define NBUCKETS_MIN 64

/* An empty cache gives its bucket array back (it grew with the windows). */
static void cache_shrink(rill_wstore_t *ws) {
        if (ws->ncached || ws->nbuckets <= NBUCKETS_MIN)
                return;
        centry_t **b = calloc(NBUCKETS_MIN, sizeof(*b));
        if (!b)
                return;
        cache_account(ws, NBUCKETS_MIN * sizeof(*b), ws->nbuckets * sizeof(*b));
        free(ws->buckets);
        ws->buckets = b;
        ws->nbuckets = NBUCKETS_MIN;
}

/* After a commit: every entry is now what RocksDB holds. Deleted windows
 * leave the cache; the rest stay as clean entries unless there are too many
 * or the process's write cache is over its budget. */
static void cache_committed(rill_wstore_t *ws) {
        int keep = ws->ncached <= CACHE_MAX && !rill_wstore_cache_over_budget();
        for (size_t i = 0; i < ws->nbuckets; i++) {
                centry_t **pp = &ws->buckets[i];
                while (*pp) {
                        centry_t *e = *pp;
                        if (keep && !e->deleted) {
                                e->dirty = 0;
                                pp = &e->next;
                                continue;
                        }
                        *pp = e->next;
                        cache_account(ws, 0, entry_cost(ws, e->key_len));
                        free(e);
                        ws->ncached--;
                }
        }
        ws->ndirty = 0;
        cache_shrink(ws);
}

static void mark_dirty(rill_wstore_t *ws, centry_t *e) {
        if (!e->dirty) {
                e->dirty = 1;
                ws->ndirty++;
                if ((ws->ndirty & 1023) == 0)
                        over_budget_check(ws);
        }
}

/* ---- open / close / wipe ------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
        (void)sb, (void)flag, (void)ftw;
        return remove(path);
}

int rill_wstore_wipe(const char *dir, char *errstr, size_t errstr_size) {
        struct stat st;
        if (stat(dir, &st) && errno == ENOENT)
                return 0;
        if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS)) {
                snprintf(errstr, errstr_size, "cannot remove state directory %s: %s", dir,
                         strerror(errno));
                return -1;
        }
        return 0;
}

int rill_wstore_mkdirs(const char *dir) {
        char tmp[1024];
        snprintf(tmp, sizeof(tmp), "%s", dir);
        for (char *p = tmp + 1; *p; p++)
                if (*p == '/') {
                        *p = '\0';
                        if (mkdir(tmp, 0750) && errno != EEXIST)
                                return -1;
                        *p = '/';
                }
        return mkdir(tmp, 0750) && errno != EEXIST ? -1 : 0;
}


static int64_t meta_get_int(rill_wstore_t *ws, const char *mkey, int64_t def, char **err) {
        size_t len = 0;
        char *v = rocksdb_get(ws->db, ws->ropts, mkey, strlen(mkey), &len, err);
        int64_t r = def;
        if (v && len == 8)
                r = rill_be64_get((unsigned char *)v);
        else if (v)
                r = INT64_MIN + 1; /* malformed meta: treated as corruption by caller */
        free(v);
        return r;
}

static rill_wstore_t *open_db(const char *dir, char **err) {
        rill_wstore_t *ws = calloc(1, sizeof(*ws));
        ws->opts = rocksdb_options_create();
        rocksdb_options_set_create_if_missing(ws->opts, 1);
        rocksdb_options_set_paranoid_checks(ws->opts, 1);
        /* memory.limit.mb's share of write buffers, per store (no write
         * buffer manager in the C API: engine/memory.h) */
        rocksdb_options_set_write_buffer_size(ws->opts, write_buffer_bytes);
        rocksdb_options_set_max_write_buffer_number(ws->opts, max_write_buffers);
        rocksdb_options_set_max_open_files(ws->opts, 64);
        rocksdb_options_set_info_log_level(ws->opts, 3 /* error */);
        rocksdb_options_set_keep_log_file_num(ws->opts, 2);
        rocksdb_block_based_table_options_t *bbo = rocksdb_block_based_options_create();
        rocksdb_block_based_options_set_block_cache(bbo, shared_block_cache());
        /* index and filter blocks in the shared cache too, so the table
         * readers of 64 open files per store are bounded by it */
        rocksdb_block_based_options_set_cache_index_and_filter_blocks(bbo, 1);
        rocksdb_options_set_block_based_table_factory(ws->opts, bbo);
        rocksdb_block_based_options_destroy(bbo);
        ws->ropts = rocksdb_readoptions_create();
        rocksdb_readoptions_set_verify_checksums(ws->ropts, 1);
        ws->wopts = rocksdb_writeoptions_create();
        ws->nbuckets = NBUCKETS_MIN;
        ws->buckets = calloc(ws->nbuckets, sizeof(*ws->buckets));
        cache_account(ws, ws->nbuckets * sizeof(*ws->buckets), 0);
        ws->db = rocksdb_open(ws->opts, dir, err);
        if (!ws->db) {
                rill_wstore_close(ws);
                return NULL;
        }
        return ws;
}

/* What a failed open means, from RocksDB's error string (the C API gives
 * nothing else). Only a store we can prove untrustworthy is wiped: deleting
 * the files of a database that another thread still has open, or that only
 * met a passing shortage, would lose committed state behind its back. */
typedef enum {
        OPEN_TRANSIENT, /* out of descriptors or memory: retry, never wipe */
        OPEN_LOCKED,    /* another owner holds the LOCK: wait (bounded), never wipe */
        OPEN_CORRUPT,   /* the store's files are bad or missing: wipe, restore */
        OPEN_FATAL,     /* anything else (permissions, disk full, ...): fail */
} open_class_t;

static open_class_t classify_open_error(const char *e) {
        static const char *const transient[] = {"Too many open files", "Cannot allocate memory",
                                                "Interrupted system call",
                                                "No buffer space available"};
        for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
                if (strstr(e, transient[i]))
                        return OPEN_TRANSIENT;
        /* in-process: "lock hold by current process ...: DIR/LOCK: No locks
         * available"; another process: "While lock file: DIR/LOCK: Resource
         * temporarily unavailable" */
        if (strstr(e, "lock hold by current process") || strstr(e, "While lock file") ||
            (strstr(e, "/LOCK:") && (strstr(e, "Resource temporarily unavailable") ||
                                     strstr(e, "No locks available"))))
                return OPEN_LOCKED;
        if (!strncmp(e, "Corruption", 10) || strstr(e, "Corruption:"))
                return OPEN_CORRUPT;
        /* a file the MANIFEST or CURRENT names is gone */
        if (strstr(e, "No such file or directory") && !strstr(e, "While mkdir"))
                return OPEN_CORRUPT;
        /* options or format of another program (comparator, ...), unless an
         * I/O error is the real cause ("Invalid argument: Found options
         * incompatible with filesystem: IO error: ...") */
        if (!strncmp(e, "Invalid argument", 16) && !strstr(e, "IO error"))
                return OPEN_CORRUPT;
        return OPEN_FATAL;
}

static void sleep_ms(int64_t ms) {
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) && errno == EINTR)
                ;
}

/* rocksdb_open, waiting out a held lock (up to lock_wait_ms) and retrying
 * transient errors (transient_retries times, backoff from 100 ms). Every other
 * error returns at once. On failure *err holds RocksDB's message and *cls
 * its class. */
static rill_wstore_t *open_db_patient(const char *dir, const rill_wstore_open_opts_t *o,
                                      char **err, open_class_t *cls) {
        int64_t t0 = rill_now_mono_ms(), backoff = 100, lock_pause = 50;
        int transient = 0, waiting = 0;
        for (;;) {
                rill_wstore_t *ws = open_db(dir, err);
                if (ws) {
                        if (waiting)
                                rill_log(RILL_LOG_INFO, "store_lock_acquired",
                                         "dir=%s waited_ms=%lld", dir,
                                         (long long)(rill_now_mono_ms() - t0));
                        return ws;
                }
                *cls = classify_open_error(*err ? *err : "");
                int64_t waited = rill_now_mono_ms() - t0;
                if (*cls == OPEN_LOCKED && waited < o->lock_wait_ms) {
                        if (!waiting)
                                rill_log(RILL_LOG_WARN, "store_locked",
                                         "dir=%s wait_ms=%lld reason=\"%s\"", dir,
                                         (long long)o->lock_wait_ms, *err);
                        waiting = 1;
                        int64_t pause = lock_pause;
                        if (pause > o->lock_wait_ms - waited)
                                pause = o->lock_wait_ms - waited;
                        sleep_ms(pause);
                        lock_pause = lock_pause < 1000 ? lock_pause * 2 : 1000;
                } else if (*cls == OPEN_TRANSIENT && transient < o->transient_retries) {
                        transient++;
                        rill_log(RILL_LOG_WARN, "store_open_retry",
                                 "dir=%s attempt=%d of=%d backoff_ms=%lld reason=\"%s\"", dir,
                                 transient, o->transient_retries, (long long)backoff, *err);
                        sleep_ms(backoff);
                        backoff *= 2;
                } else {
                        return NULL;
                }
                free(*err);
                *err = NULL;
        }
}

static void open_failed(const char *dir, open_class_t cls, const char *why,
                        const rill_wstore_open_opts_t *o, char *errstr, size_t errstr_size) {
        switch (cls) {
        case OPEN_LOCKED:
                snprintf(errstr, errstr_size,
                         "cannot open state store %s: still locked after %lld ms: %s (hint: "
                         "another stream thread or process has this store open; is a second "
                         "process using the same state.dir, or is the previous owner of the "
                         "partition stuck? the store was left as it is)",
                         dir, (long long)o->lock_wait_ms, why);
                break;
        case OPEN_TRANSIENT:
                snprintf(errstr, errstr_size,
                         "cannot open state store %s after %d retries: %s (hint: raise the "
                         "open files limit, ulimit -n, or lower num.stream.threads; the store "
                         "was left as it is)",
                         dir, o->transient_retries, why);
                break;
        default:
                snprintf(errstr, errstr_size,
                         "cannot open state store %s: %s (hint: the store was left as it is; "
                         "fix the cause, or remove the directory to rebuild it from the "
                         "changelog)",
                         dir, why);
                break;
        }
}

rill_wstore_t *rill_wstore_open(const char *dir, const char *identity, int *wiped,
                                char *errstr, size_t errstr_size) {
        return rill_wstore_open_opts(dir, identity, NULL, wiped, errstr, errstr_size);
}

rill_wstore_t *rill_wstore_open_opts(const char *dir, const char *identity,
                                     const rill_wstore_open_opts_t *opts, int *wiped,
                                     char *errstr, size_t errstr_size) {
        const rill_wstore_open_opts_t defaults = {RILL_WSTORE_LOCK_WAIT_MS,
                                                  RILL_WSTORE_TRANSIENT_RETRIES, NULL};
        const rill_wstore_open_opts_t *o = opts ? opts : &defaults;
        const rill_state_codec_t *codec = o->codec ? o->codec : &rill_agg_codec;
        char *err = NULL;
        *wiped = 0;
        if (!codec->size || codec->size > RILL_STATE_MAX || !codec->encode || !codec->decode) {
                snprintf(errstr, errstr_size,
                         "state store %s: the aggregate state's codec is invalid (size %zu, "
                         "must be 1..%d, with encode and decode)",
                         dir, codec->size, RILL_STATE_MAX);
                return NULL;
        }
        if (rill_wstore_mkdirs(dir)) {
                snprintf(errstr, errstr_size, "cannot create state directory %s: %s", dir,
                         strerror(errno));
                return NULL;
        }
        for (int attempt = 0; attempt < 2; attempt++) {
                open_class_t cls = OPEN_FATAL;
                rill_wstore_t *ws = open_db_patient(dir, o, &err, &cls);
                const char *why = NULL;
                if (ws) {
                        ws->codec = codec;
                        size_t len = 0;
                        char *id = rocksdb_get(ws->db, ws->ropts, META_IDENTITY,
                                               strlen(META_IDENTITY), &len, &err);
                        ws->changelog_offset = meta_get_int(ws, META_OFFSET, -1, &err);
                        ws->stream_time = meta_get_int(ws, META_STREAM_TIME, INT64_MIN, &err);
                        ws->closed_bound_staged = INT64_MIN;
                        ws->input_offset_staged = -1;
                        if (!err)
                                ws->closed_bound =
                                    meta_get_int(ws, META_CLOSED_BOUND, INT64_MIN, &err);
                        if (!err)
                                ws->input_offset = meta_get_int(ws, META_INPUT_OFFSET, -1, &err);
                        if (!err)
                                ws->sources = rocksdb_get(ws->db, ws->ropts, META_SOURCES,
                                                          strlen(META_SOURCES), &ws->sources_len,
                                                          &err);
                        if (err) {
                                why = err;
                                cls = classify_open_error(err);
                        } else if (!id && ws->changelog_offset != -1)
                                why = "no identity", cls = OPEN_CORRUPT;
                        else if (id && (len != strlen(identity) || memcmp(id, identity, len)))
                                why = "identity differs", cls = OPEN_CORRUPT;
                        else if (ws->changelog_offset == INT64_MIN + 1 ||
                                 ws->stream_time == INT64_MIN + 1 ||
                                 ws->input_offset == INT64_MIN + 1)
                                why = "malformed metadata", cls = OPEN_CORRUPT;
                        free(id);
                        if (!why) {
                                if (ws->changelog_offset == -1) {
                                        /* new store: stamp it with its owner */
                                        rocksdb_put(ws->db, ws->wopts, META_IDENTITY,
                                                    strlen(META_IDENTITY), identity,
                                                    strlen(identity), &err);
                                        if (err) {
                                                snprintf(errstr, errstr_size,
                                                         "cannot write state store %s: %s", dir,
                                                         err);
                                                free(err);
                                                rill_wstore_close(ws);
                                                return NULL;
                                        }
                                }
                                return ws;
                        }
                        /* closed before any wipe: we held the lock, nobody else
                         * has these files open */
                        rill_wstore_close(ws);
                } else {
                        why = err;
                }
                if (cls != OPEN_CORRUPT || attempt == 1) {
                        open_failed(dir, cls, why ? why : "unknown error", o, errstr,
                                    errstr_size);
                        free(err);
                        return NULL;
                }
                /* Never serve state we cannot trust: wipe and rebuild from the
                 * changelog. */
                rill_log(RILL_LOG_WARN, "store_wiped", "dir=%s reason=\"%s\"", dir,
                         why ? why : "?");
                free(err);
                err = NULL;
                if (rill_wstore_wipe(dir, errstr, errstr_size) || rill_wstore_mkdirs(dir))
                        return NULL;
                *wiped = 1;
        }
        return NULL;
}

void rill_wstore_close(rill_wstore_t *ws) {
        if (!ws)
                return;
        cache_clear(ws);
        cache_account(ws, 0, ws->cache_bytes); /* the bucket array */
        free(ws->buckets);
        free(ws->sources);
        free(ws->sources_staged);
        if (ws->db)
                rocksdb_close(ws->db);
        rocksdb_readoptions_destroy(ws->ropts);
        rocksdb_writeoptions_destroy(ws->wopts);
        rocksdb_options_destroy(ws->opts);
        free(ws);
}

int64_t rill_wstore_changelog_offset(const rill_wstore_t *ws) { return ws->changelog_offset; }
int64_t rill_wstore_stream_time(const rill_wstore_t *ws) { return ws->stream_time; }

/* ---- reads and cached writes ------------------------------------------------- */

const rill_state_codec_t *rill_wstore_codec(const rill_wstore_t *ws) { return ws->codec; }

int rill_wstore_get(rill_wstore_t *ws, int64_t wstart, const char *key, size_t key_len,
                    void *state, char *errstr, size_t errstr_size) {
        centry_t *e = cache_find(ws, hash_key(wstart, key, key_len), wstart, key, key_len);
        if (e) {
                if (e->deleted)
                        return 0;
                memcpy(state, e->state, ws->codec->size);
                return 1;
        }
        unsigned char kbuf[RILL_WKEY_HDR + MAX_KEY];
        if (key_len > MAX_KEY) {
                snprintf(errstr, errstr_size, "key of %zu bytes exceeds the store limit %d",
                         key_len, MAX_KEY);
                return -1;
        }
        size_t klen = rill_wkey_encode(wstart, key, key_len, kbuf);
        char *err = NULL;
        size_t vlen = 0;
        char *v = rocksdb_get(ws->db, ws->ropts, (char *)kbuf, klen, &vlen, &err);
        if (err) {
                snprintf(errstr, errstr_size, "state store read failed: %s", err);
                free(err);
                return -1;
        }
        if (!v)
                return 0;
        int rc = ws->codec->decode(ws->codec->opaque, v, vlen, state) ? -1 : 1;
        free(v);
        if (rc < 0) {
                snprintf(errstr, errstr_size, "state store holds an undecodable value (corrupt)");
                return rc;
        }
        if (atomic_load(&write_cache_used) + entry_cost(ws, key_len) > write_cache_budget)
                return rc; /* over the budget: read again next time */
        e = cache_upsert(ws, wstart, key, key_len); /* clean: as RocksDB has it */
        memcpy(e->state, state, ws->codec->size);
        e->deleted = 0;
        return rc;
}

void rill_wstore_put(rill_wstore_t *ws, int64_t wstart, const char *key, size_t key_len,
                     const void *state) {
        centry_t *e = cache_upsert(ws, wstart, key, key_len);
        memcpy(e->state, state, ws->codec->size);
        e->deleted = 0;
        mark_dirty(ws, e);
}

void rill_wstore_delete(rill_wstore_t *ws, int64_t wstart, const char *key, size_t key_len) {
        centry_t *e = cache_upsert(ws, wstart, key, key_len);
        e->deleted = 1;
        mark_dirty(ws, e);
}

/* ---- closing windows ------------------------------------------------------------ */

void rill_wlist_free(rill_wlist_t *l) {
        for (size_t i = 0; i < l->cnt; i++)
                free(l->v[i].state); /* the key is in the same allocation */
        free(l->v);
        memset(l, 0, sizeof(*l));
}

static void wlist_add(rill_wlist_t *l, int64_t wstart, const char *key, size_t len,
                      const void *state, size_t state_size) {
        if (l->cnt == l->size) {
                l->size = l->size ? l->size * 2 : 16;
                l->v = realloc(l->v, l->size * sizeof(*l->v));
        }
        rill_wentry_t *e = &l->v[l->cnt++];
        e->wstart = wstart;
        e->state = malloc(state_size + (len ? len : 1));
        memcpy(e->state, state, state_size);
        e->key = (char *)e->state + state_size;
        memcpy(e->key, key, len);
        e->key_len = len;
}

static int wentry_cmp(const void *a, const void *b) {
        const rill_wentry_t *x = a, *y = b;
        if (x->wstart != y->wstart)
                return x->wstart < y->wstart ? -1 : 1;
        size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
        int c = memcmp(x->key, y->key, n);
        return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

int rill_wstore_closed(rill_wstore_t *ws, int64_t bound, rill_wlist_t *out, char *errstr,
                       size_t errstr_size) {
        unsigned char upper[RILL_WKEY_HDR];
        size_t upper_len = sizeof(upper);
        if (bound > WSTART_LIMIT) { /* never into the meta keys */
                upper[0] = 0xff;
                upper_len = 1;
        } else {
                rill_wkey_encode(bound, "", 0, upper);
        }
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        rocksdb_readoptions_set_verify_checksums(ro, 1);
        rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)upper, upper_len);
        rocksdb_iterator_t *it = rocksdb_create_iterator(ws->db, ro);
        int rc = 0;
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
                size_t klen, vlen;
                const char *k = rocksdb_iter_key(it, &klen);
                const char *v = rocksdb_iter_value(it, &vlen);
                int64_t wstart;
                const char *key;
                size_t key_len;
                _Alignas(16) unsigned char state[RILL_STATE_MAX];
                if (rill_wkey_decode(k, klen, &wstart, &key, &key_len) ||
                    ws->codec->decode(ws->codec->opaque, v, vlen, state)) {
                        snprintf(errstr, errstr_size, "state store holds an undecodable window (corrupt)");
                        rc = -1;
                        break;
                }
                if (cache_find(ws, hash_key(wstart, key, key_len), wstart, key, key_len))
                        continue; /* the cache has the newer truth */
                wlist_add(out, wstart, key, key_len, state, ws->codec->size);
        }
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        if (err && !rc) {
                snprintf(errstr, errstr_size, "state store scan failed: %s", err);
                rc = -1;
        }
        free(err);
        rocksdb_iter_destroy(it);
        rocksdb_readoptions_destroy(ro);
        if (rc)
                return rc;
        for (size_t i = 0; i < ws->nbuckets; i++)
                for (centry_t *e = ws->buckets[i]; e; e = e->next)
                        if (!e->deleted && e->wstart < bound)
                                wlist_add(out, e->wstart, e->key, e->key_len, e->state,
                                          ws->codec->size);
        if (out->cnt > 1) /* qsort(NULL, 0) is undefined */
                qsort(out->v, out->cnt, sizeof(*out->v), wentry_cmp);
        return 0;
}

int rill_wstore_scan_key(rill_wstore_t *ws, const char *key, size_t key_len, rill_wlist_t *out,
                         char *errstr, size_t errstr_size) {
        unsigned char upper[1] = {0xff}; /* below the meta keys */
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)upper, 1);
        rocksdb_iterator_t *it = rocksdb_create_iterator(ws->db, ro);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
                size_t klen, vlen;
                const char *k = rocksdb_iter_key(it, &klen), *v = rocksdb_iter_value(it, &vlen);
                int64_t wstart;
                const char *wk;
                size_t wk_len;
                _Alignas(16) unsigned char state[RILL_STATE_MAX];
                if (!rill_wkey_decode(k, klen, &wstart, &wk, &wk_len) && wk_len == key_len &&
                    !memcmp(wk, key, key_len) &&
                    !ws->codec->decode(ws->codec->opaque, v, vlen, state))
                        wlist_add(out, wstart, wk, wk_len, state, ws->codec->size);
        }
        char *err = NULL;
        rocksdb_iter_get_error(it, &err);
        rocksdb_iter_destroy(it);
        rocksdb_readoptions_destroy(ro);
        if (err) {
                snprintf(errstr, errstr_size, "state store scan failed: %s", err);
                free(err);
                return -1;
        }
        return 0;
}

/* ---- commit: changelog view, apply, discard -------------------------------------- */

void rill_wstore_foreach_dirty(rill_wstore_t *ws,
                               void (*cb)(void *, int64_t, const char *, size_t,
                                          const void *),
                               void *opaque) {
        for (size_t i = 0; i < ws->nbuckets; i++)
                for (centry_t *e = ws->buckets[i]; e; e = e->next)
                        if (e->dirty)
                                cb(opaque, e->wstart, e->key, e->key_len,
                                   e->deleted ? NULL : e->state);
}

size_t rill_wstore_dirty_count(const rill_wstore_t *ws) { return ws->ndirty; }

const void *rill_wstore_sources(const rill_wstore_t *ws, size_t *len) {
        *len = ws->sources_len;
        return ws->sources;
}

int64_t rill_wstore_closed_bound(const rill_wstore_t *ws) { return ws->closed_bound; }

void rill_wstore_put_closed_bound(rill_wstore_t *ws, int64_t bound) {
        ws->closed_bound_staged = bound;
}

int64_t rill_wstore_input_offset(const rill_wstore_t *ws) { return ws->input_offset; }

void rill_wstore_put_input_offset(rill_wstore_t *ws, int64_t offset) {
        ws->input_offset_staged = offset;
}

void rill_wstore_put_sources(rill_wstore_t *ws, const void *value, size_t len) {
        free(ws->sources_staged);
        ws->sources_staged = malloc(len ? len : 1);
        memcpy(ws->sources_staged, value, len);
        ws->sources_staged_len = len;
}

static void batch_meta(rocksdb_writebatch_t *b, int64_t offset, int64_t stream_time) {
        unsigned char v[8];
        rill_be64_put(v, offset);
        rocksdb_writebatch_put(b, META_OFFSET, strlen(META_OFFSET), (char *)v, 8);
        if (stream_time != INT64_MIN) {
                rill_be64_put(v, stream_time);
                rocksdb_writebatch_put(b, META_STREAM_TIME, strlen(META_STREAM_TIME), (char *)v,
                                       8);
        }
}

/* Store key order: window start (signed), then the key's bytes, shorter
 * first on a common prefix -- the bytewise order of rill_wkey_encode. */
static int centry_cmp(const void *a, const void *b) {
        const centry_t *x = *(const centry_t *const *)a, *y = *(const centry_t *const *)b;
        if (x->wstart != y->wstart)
                return x->wstart < y->wstart ? -1 : 1;
        size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
        int c = memcmp(x->key, y->key, n);
        if (c)
                return c;
        return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* The cache goes into one WriteBatch in key order: RocksDB's memtable
 * (a skip list) inserts sorted keys from its last position, while keys in
 * hash order each search from the top -- over half the CPU of a restore
 * before this (perf). */
int rill_wstore_apply(rill_wstore_t *ws, int64_t changelog_offset, int64_t stream_time,
                      char *errstr, size_t errstr_size) {
        centry_t **v = malloc((ws->ndirty ? ws->ndirty : 1) * sizeof(*v));
        if (!v) {
                snprintf(errstr, errstr_size, "state store write: out of memory");
                return -1;
        }
        size_t n = 0;
        for (size_t i = 0; i < ws->nbuckets; i++)
                for (centry_t *e = ws->buckets[i]; e; e = e->next) {
                        if (!e->dirty || e->key_len > MAX_KEY) /* longer: refused on get */
                                continue;
                        if (e->wstart >= WSTART_LIMIT) {
                                snprintf(errstr, errstr_size,
                                         "state store write refused: window start %lld is in "
                                         "the store's meta-key range (>= %lld) (hint: event "
                                         "times after year 9999 must be rejected before they "
                                         "reach a window; see engine/window.h)",
                                         (long long)e->wstart, (long long)WSTART_LIMIT);
                                free(v);
                                return -1;
                        }
                        v[n++] = e;
                }
        if (n > 1)
                qsort(v, n, sizeof(*v), centry_cmp);
        rocksdb_writebatch_t *b = rocksdb_writebatch_create();
        unsigned char kbuf[RILL_WKEY_HDR + MAX_KEY], vbuf[RILL_ENCODED_MAX];
        for (size_t i = 0; i < n; i++) {
                centry_t *e = v[i];
                size_t klen = rill_wkey_encode(e->wstart, e->key, e->key_len, kbuf);
                if (e->deleted) {
                        rocksdb_writebatch_delete(b, (char *)kbuf, klen);
                } else {
                        size_t vlen = ws->codec->encode(ws->codec->opaque, e->state, vbuf,
                                                        sizeof(vbuf));
                        if (!vlen) {
                                snprintf(errstr, errstr_size,
                                         "state store write refused: a window's state does not "
                                         "encode in %d bytes (hint: the aggregator's encode "
                                         "function must fit RILL_ENCODED_MAX)",
                                         RILL_ENCODED_MAX);
                                rocksdb_writebatch_destroy(b);
                                free(v);
                                return -1;
                        }
                        rocksdb_writebatch_put(b, (char *)kbuf, klen, (char *)vbuf, vlen);
                }
        }
        free(v);
        batch_meta(b, changelog_offset, stream_time);
        if (ws->closed_bound_staged != INT64_MIN) {
                unsigned char cb[8];
                rill_be64_put(cb, ws->closed_bound_staged);
                rocksdb_writebatch_put(b, META_CLOSED_BOUND, strlen(META_CLOSED_BOUND), (char *)cb,
                                       8);
        }
        if (ws->sources_staged)
                rocksdb_writebatch_put(b, META_SOURCES, strlen(META_SOURCES), ws->sources_staged,
                                       ws->sources_staged_len);
        if (ws->input_offset_staged >= 0) {
                unsigned char io[8];
                rill_be64_put(io, ws->input_offset_staged);
                rocksdb_writebatch_put(b, META_INPUT_OFFSET, strlen(META_INPUT_OFFSET), (char *)io,
                                       8);
        }
        char *err = NULL;
        rocksdb_write(ws->db, ws->wopts, b, &err);
        rocksdb_writebatch_destroy(b);
        if (err) {
                snprintf(errstr, errstr_size, "state store write failed: %s", err);
                free(err);
                return -1;
        }
        ws->changelog_offset = changelog_offset;
        if (stream_time != INT64_MIN)
                ws->stream_time = stream_time;
        if (ws->closed_bound_staged != INT64_MIN) {
                ws->closed_bound = ws->closed_bound_staged;
                ws->closed_bound_staged = INT64_MIN;
        }
        if (ws->input_offset_staged >= 0) {
                ws->input_offset = ws->input_offset_staged;
                ws->input_offset_staged = -1;
        }
        if (ws->sources_staged) {
                free(ws->sources);
                ws->sources = ws->sources_staged, ws->sources_len = ws->sources_staged_len;
                ws->sources_staged = NULL, ws->sources_staged_len = 0;
        }
        cache_committed(ws);
        return 0;
}

void rill_wstore_discard(rill_wstore_t *ws) {
        cache_clear(ws);
        cache_shrink(ws);
        free(ws->sources_staged);
        ws->sources_staged = NULL, ws->sources_staged_len = 0;
        ws->closed_bound_staged = INT64_MIN;
        ws->input_offset_staged = -1;
}

/* ---- restore ---------------------------------------------------------------------- */

int rill_wstore_restore_add(rill_wstore_t *ws, const void *key, size_t key_len,
                            const void *value, size_t value_len) {
        if (key_len == RILL_STREAM_TIME_KEY_LEN && !memcmp(key, RILL_STREAM_TIME_KEY, 1)) {
                if (value && (value_len == 8 || value_len == 16)) {
                        int64_t st = rill_be64_get(value);
                        if (st > ws->stream_time || ws->stream_time == INT64_MIN)
                                ws->stream_time = st;
                        /* 16 bytes: the bound below which windows were closed
                         * (and emitted) at that stream time */
                        if (value_len == 16)
                                ws->closed_bound_staged = rill_be64_get((const unsigned char *)value + 8);
                }
                return 0;
        }
        if (key_len == RILL_SOURCES_KEY_LEN && !memcmp(key, RILL_SOURCES_KEY, 1)) {
                if (value && value_len % 8 == 0)
                        rill_wstore_put_sources(ws, value, value_len); /* the last one wins */
                return 0;
        }
        /* Through the write cache: the last change of a window in the batch
         * wins (a changelog holds one per commit that touched it) and the
         * batch is written in key order. */
        int64_t wstart;
        const char *k;
        size_t klen;
        _Alignas(16) unsigned char state[RILL_STATE_MAX];
        if (rill_wkey_decode(key, key_len, &wstart, &k, &klen) || klen > MAX_KEY ||
            (value && ws->codec->decode(ws->codec->opaque, value, value_len, state)))
                return -1;
        if (value)
                rill_wstore_put(ws, wstart, k, klen, state);
        else
                rill_wstore_delete(ws, wstart, k, klen);
        return 0;
}

int rill_wstore_restore_flush(rill_wstore_t *ws, int64_t next_offset, char *errstr,
                              size_t errstr_size) {
        if (rill_wstore_apply(ws, next_offset, ws->stream_time, errstr, errstr_size)) {
                snprintf(errstr + strlen(errstr), errstr_size - strlen(errstr), " (during restore)");
                return -1;
        }
        return 0;
}

uint64_t rill_wstore_size_bytes(rill_wstore_t *ws) {
        char *v = rocksdb_property_value(ws->db, "rocksdb.total-sst-files-size");
        uint64_t n = v ? strtoull(v, NULL, 10) : 0;
        free(v);
        char *m = rocksdb_property_value(ws->db, "rocksdb.cur-size-all-mem-tables");
        n += m ? strtoull(m, NULL, 10) : 0;
        free(m);
        return n;
}
