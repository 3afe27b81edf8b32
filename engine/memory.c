/*
 * memory.c -- memory.limit.mb divided among the memory that grows with load.
 *
 * The design (shares, reserved overhead, why the RocksDB write buffers are
 * divided statically) is in memory.h. The numbers below each carry the
 * measurement or the rule they come from; docs/operations.md ("Memory")
 * repeats them for operators.
 */
#include "memory.h"

#include <stdio.h>

#define KB 1024LL
#define MB (1024LL * 1024LL)

/* What the process takes outside the budget: measured idle with one stream
 * thread, 22 MB with 1 aggregation partition and 40 MB with 96 (RocksDB's
 * per-store bookkeeping, ~190 KB each); the rest is headroom for thread
 * stacks and allocator slack under load. */
#define RESERVED_BASE_MB 64
#define RESERVED_PER_PARTITION_KB 256
#define RESERVED_PER_THREAD_MB 8

/* RocksDB sanitizes write_buffer_size up to 64 KB and needs 2 buffers (one
 * filling while the other flushes); above 8 MB (the old fixed size) a
 * bigger memtable buys nothing for windows that live minutes. */
#define WRITE_BUFFER_MIN (64 * KB)
#define WRITE_BUFFER_MAX (8 * MB)
#define WRITE_BUFFERS 2
/* A fetched message costs ~350 bytes of librdkafka memory besides its
 * payload (measured, see engine/worker.c); 400 rounds up. */
#define MSG_COST 400
#define CONSUMER_MIN (2 * MB) /* per stream thread */
/* The throughput-tuned values of engine/worker.c: never more than these. */
#define QUEUED_MIN_MESSAGES_MAX 100000
#define PARTITION_FETCH_MAX (256 * KB)
#define RESTORE_KBYTES_MAX 32768

static int64_t reserved_mb(int partitions, int threads) {
        return RESERVED_BASE_MB + (partitions * (int64_t)RESERVED_PER_PARTITION_KB + 1023) / 1024 +
               threads * (int64_t)RESERVED_PER_THREAD_MB;
}

/* The smallest budget: each store's 2 minimal write buffers in the 25 %
 * share, each thread's minimal consumer queue in the 25 % share, and 16 MB
 * in all. */
static int64_t min_budget_mb(int partitions, int threads) {
        int64_t b = 16;
        int64_t by_stores = (partitions * WRITE_BUFFERS * WRITE_BUFFER_MIN * 4 + MB - 1) / MB;
        int64_t by_threads = (threads * CONSUMER_MIN * 100 / 25 + MB - 1) / MB;
        if (by_stores > b)
                b = by_stores;
        if (by_threads > b)
                b = by_threads;
        return b;
}

int64_t rill_memplan_min_mb(int partitions, int threads) {
        return reserved_mb(partitions, threads) + min_budget_mb(partitions, threads);
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static void kv(rill_kafka_default_t *d, const char *key, int64_t value) {
        d->key = key;
        snprintf(d->value, sizeof(d->value), "%lld", (long long)value);
}

int rill_memplan(int64_t limit_mb, int partitions, int threads, rill_memplan_t *p,
                 char *errstr, size_t errstr_size) {
        if (partitions < 1)
                partitions = 1;
        if (threads < 1)
                threads = 1;
        int64_t min = rill_memplan_min_mb(partitions, threads);
        if (limit_mb < min) {
                snprintf(errstr, errstr_size,
                         "memory.limit.mb=%lld is too small for %d aggregation partitions and %d "
                         "stream thread%s: it needs at least %lld MB (%lld reserved + %lld for "
                         "caches and buffers) (hint: raise --memory-limit-mb and the container's "
                         "memory limit to %lld or more, or lower --num-stream-threads)",
                         (long long)limit_mb, partitions, threads, threads == 1 ? "" : "s",
                         (long long)min, (long long)reserved_mb(partitions, threads),
                         (long long)min_budget_mb(partitions, threads), (long long)min);
                return -1;
        }
        *p = (rill_memplan_t){0};
        p->limit_mb = limit_mb;
        p->reserved_mb = reserved_mb(partitions, threads);
        p->budget_mb = limit_mb - p->reserved_mb;
        int64_t b = p->budget_mb * MB;
        p->max_write_buffers = WRITE_BUFFERS;
        p->write_buffer_bytes = (size_t)clamp(b / 4 / (partitions * WRITE_BUFFERS),
                                              WRITE_BUFFER_MIN, WRITE_BUFFER_MAX);
        p->block_cache_bytes = (size_t)(b * 15 / 100);
        p->write_cache_bytes = (size_t)(b * 20 / 100);

        /* stream consumers: the count bound is what bounds memory (the byte
         * bound counts payloads only); a thread fetches up to every input and
         * repartition partition, and one fetch response stays in memory
         * until its last message is consumed */
        int64_t cs = b * 25 / 100 / threads;
        kv(&p->consumer[0], "queued.min.messages", clamp(cs / MSG_COST, 1000,
                                                         QUEUED_MIN_MESSAGES_MAX));
        kv(&p->consumer[1], "queued.max.messages.kbytes", clamp(cs / 2 / KB, 1024, 1048576));
        kv(&p->consumer[2], "max.partition.fetch.bytes",
           clamp(cs / 4 / (2 * partitions), 32 * KB, PARTITION_FETCH_MAX));
        /* restore consumers */
        int64_t rs = b * 5 / 100 / threads;
        kv(&p->restorer[0], "queued.min.messages", clamp(rs / MSG_COST, 1000, 10000000));
        kv(&p->restorer[1], "queued.max.messages.kbytes", clamp(rs / 2 / KB, 1024,
                                                                RESTORE_KBYTES_MAX));
        kv(&p->restorer[2], "max.partition.fetch.bytes",
           clamp(rs / 4, 32 * KB, 1024 * KB));
        /* transactional producers: a full queue makes the produce call wait
         * for deliveries (bounded by the transaction's deadline) */
        int64_t ps = b * 10 / 100 / threads;
        kv(&p->producer[0], "queue.buffering.max.messages", clamp(ps / MSG_COST, 1000, 100000));
        kv(&p->producer[1], "queue.buffering.max.kbytes", clamp(ps / 2 / KB, 1024, 1048576));
        return 0;
}
