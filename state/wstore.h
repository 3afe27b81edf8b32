/*
 * wstore.h -- a task's window store: RocksDB plus an in-memory write cache.
 *
 * Ownership: one store per task, owned by the stream thread that owns the
 * task; no function here is thread-safe, none needs to be.
 *
 * Two layers:
 *   - RocksDB holds the committed state: every window at the changelog
 *     offset recorded with it (meta key), and the stream time.
 *   - The write cache holds the changes since the last commit. Reads look at
 *     the cache first. At commit the cache is produced to the changelog
 *     (rill_wstore_foreach_dirty), and, once the Kafka transaction has
 *     committed, applied to RocksDB in one WriteBatch together with the new
 *     changelog offset and stream time (rill_wstore_apply). On abort it is
 *     dropped (rill_wstore_discard) and the committed state is untouched.
 */
#ifndef RILL_WSTORE_H
#define RILL_WSTORE_H

#include "codec.h"
#include <stddef.h>
#include <stdint.h>

typedef struct rill_wstore rill_wstore_t;

/** A window found by rill_wstore_closed() or rill_wstore_scan_key(): its
 *  state (the store codec's size) and key, owned by the list. */
typedef struct rill_wentry {
        int64_t wstart;
        char *key;
        size_t key_len;
        void *state;
} rill_wentry_t;

typedef struct rill_wlist {
        rill_wentry_t *v;
        size_t cnt, size;
} rill_wlist_t;

void rill_wlist_free(rill_wlist_t *l);

/** How long rill_wstore_open waits for a lock another owner holds, and how
 *  often it retries a transient error (out of file descriptors or memory). */
#define RILL_WSTORE_LOCK_WAIT_MS 30000
#define RILL_WSTORE_TRANSIENT_RETRIES 4 /* backoff 100, 200, 400, 800 ms */

typedef struct rill_wstore_open_opts {
        int64_t lock_wait_ms;  /* wait this long at most for a held LOCK */
        int transient_retries; /* retries of a transient error */
        const rill_state_codec_t *codec; /* the windows' state; NULL: rill_agg_codec.
                                          * Kept by reference: must outlive the store */
} rill_wstore_open_opts_t;

/* ---- process-wide memory (memory.limit.mb, engine/memory.h) ------------------ */

typedef struct rill_wstore_memory {
        size_t block_cache_bytes;  /* one LRU block cache for every store */
        size_t write_buffer_bytes; /* RocksDB write_buffer_size of each store */
        int max_write_buffers;     /* RocksDB max_write_buffer_number of each store */
        size_t write_cache_bytes;  /* the write caches of all stores together */
} rill_wstore_memory_t;

/** Set the memory of every store opened from now on (defaults: 64 MB block
 *  cache, 2 x 8 MB write buffers, 256 MB of write cache).
 *  @locality the application thread, before any store opens. */
void rill_wstore_set_memory(const rill_wstore_memory_t *m);
/** Bytes held by the write caches of all stores of the process.
 *  @locality any thread. */
size_t rill_wstore_cache_bytes(void);
/** 1 when the write caches hold more than their budget: only changes since
 *  the last commit remain, so committing sooner is what frees memory.
 *  @locality any thread. */
int rill_wstore_cache_over_budget(void);

/** Open (creating if missing) the store at dir. identity names the owner
 *  (application, changelog topic, partition).
 *
 *  Wiped and opened empty (*wiped set to 1, so the caller restores it from
 *  the changelog start) only when the store cannot be trusted: RocksDB
 *  reports corruption or missing files, or the recorded identity differs
 *  (another application or incarnation).
 *
 *  Never wiped on any other error, which is returned (NULL, errstr naming
 *  the directory, with a hint) after:
 *   - a LOCK held by another owner (a stream thread of this process that
 *     still has the partition, or another process on the same state.dir):
 *     waited for up to RILL_WSTORE_LOCK_WAIT_MS (30 s);
 *   - a transient error (too many open files, out of memory): retried
 *     RILL_WSTORE_TRANSIENT_RETRIES times with backoff (1.5 s in all);
 *   - anything else (permission denied, disk full, ...): at once.
 *  So the call blocks up to about 30 s.
 *  @locality the stream thread that will own the store. */
rill_wstore_t *rill_wstore_open(const char *dir, const char *identity, int *wiped,
                                char *errstr, size_t errstr_size);
/** The same with explicit bounds (NULL: the defaults above). */
rill_wstore_t *rill_wstore_open_opts(const char *dir, const char *identity,
                                     const rill_wstore_open_opts_t *opts, int *wiped,
                                     char *errstr, size_t errstr_size);
void rill_wstore_close(rill_wstore_t *ws);

/** Create a state directory and its parents (mode 0750); an existing one is
 *  fine. @returns 0 or -1 (errno set). @locality any thread. */
int rill_wstore_mkdirs(const char *dir);

/** Remove a store directory and everything in it. @returns 0 or -1. */
int rill_wstore_wipe(const char *dir, char *errstr, size_t errstr_size);

/** Committed changelog offset (next offset to read), -1 if none. */
int64_t rill_wstore_changelog_offset(const rill_wstore_t *ws);
/** Committed stream time, INT64_MIN if none. */
int64_t rill_wstore_stream_time(const rill_wstore_t *ws);

/** The committed progress of the task's sources (the RILL_SOURCES_KEY
 *  value: one 8-byte BE time per source partition), NULL when none is
 *  stored; *len is its length. Owned by the store. */
const void *rill_wstore_sources(const rill_wstore_t *ws, size_t *len);
/** The committed close bound: windows starting before it were closed and
 *  emitted by the task that wrote it (INT64_MIN: unknown, e.g. a store of
 *  an older version). */
int64_t rill_wstore_closed_bound(const rill_wstore_t *ws);
/** Stage a new close bound, written by the next rill_wstore_apply. */
void rill_wstore_put_closed_bound(rill_wstore_t *ws, int64_t bound);
/** The input offset of the last commit this store applied (the next
 *  offset of the task's input partition that the same transaction
 *  committed for the group), -1 when unknown (a new store, one of an older
 *  version, or one written by restores only). */
int64_t rill_wstore_input_offset(const rill_wstore_t *ws);
/** Stage the input offset of the commit being applied: written by the next
 *  rill_wstore_apply, dropped by rill_wstore_discard. */
void rill_wstore_put_input_offset(rill_wstore_t *ws, int64_t offset);
/** Stage a new sources value: written by the next rill_wstore_apply with
 *  the windows, dropped by rill_wstore_discard. Copies value. */
void rill_wstore_put_sources(rill_wstore_t *ws, const void *value, size_t len);

/** The codec the store was opened with (the size of every state). */
const rill_state_codec_t *rill_wstore_codec(const rill_wstore_t *ws);

/** Look a window up (cache, then RocksDB); state receives the codec's size.
 *  @returns 1 found, 0 absent, -1 on a read or decode error (errstr). */
int rill_wstore_get(rill_wstore_t *ws, int64_t wstart, const char *key, size_t key_len,
                    void *state, char *errstr, size_t errstr_size);
/** Record a new state for a window in the cache (copied). */
void rill_wstore_put(rill_wstore_t *ws, int64_t wstart, const char *key, size_t key_len,
                     const void *state);
/** Record the deletion of a window in the cache. */
void rill_wstore_delete(rill_wstore_t *ws, int64_t wstart, const char *key, size_t key_len);

/** Collect every live window with wstart < bound (cache merged over RocksDB),
 *  ordered by (wstart, key). @returns 0 or -1 (errstr). */
int rill_wstore_closed(rill_wstore_t *ws, int64_t bound, rill_wlist_t *out, char *errstr,
                       size_t errstr_size);

/** Call cb for each cached change (state NULL for a deletion). */
void rill_wstore_foreach_dirty(rill_wstore_t *ws,
                               void (*cb)(void *opaque, int64_t wstart, const char *key,
                                          size_t key_len, const void *state),
                               void *opaque);
size_t rill_wstore_dirty_count(const rill_wstore_t *ws);

/** Apply the cache to RocksDB in one WriteBatch with the changelog offset and
 *  stream time, then clear the cache. Call only after the Kafka transaction
 *  that carried these changes committed. @returns 0 or -1 (errstr). */
int rill_wstore_apply(rill_wstore_t *ws, int64_t changelog_offset, int64_t stream_time,
                      char *errstr, size_t errstr_size);
/** Drop the cache (transaction aborted). */
void rill_wstore_discard(rill_wstore_t *ws);

/* ---- restore: changelog records through the write cache ------------------- */

/** Add one changelog record (value NULL = tombstone) to the restore batch.
 *  @returns 0, or -1 when the record is not in the changelog format. */
int rill_wstore_restore_add(rill_wstore_t *ws, const void *key, size_t key_len,
                            const void *value, size_t value_len);
/** Write the restore batch with next_offset as the new changelog offset.
 *  @returns 0 or -1 (errstr). */
int rill_wstore_restore_flush(rill_wstore_t *ws, int64_t next_offset, char *errstr,
                              size_t errstr_size);

/** Collect the committed windows of one key (RocksDB only, not the cache).
 *  Unlike everything else here this may run on another thread than the
 *  owner's (RocksDB reads are thread-safe), as long as the store is not
 *  closed meanwhile. @returns 0 or -1 (errstr). */
int rill_wstore_scan_key(rill_wstore_t *ws, const char *key, size_t key_len, rill_wlist_t *out,
                         char *errstr, size_t errstr_size);

/** Approximate on-disk size in bytes (for metrics). */
uint64_t rill_wstore_size_bytes(rill_wstore_t *ws);

#endif
