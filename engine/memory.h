/*
 * memory.h -- one process-wide memory limit, divided among the consumers of
 * memory that grow with load (memory.limit.mb; docs/operations.md, "Memory").
 *
 * memory.limit.mb is the process's whole allowance: set it to the
 * container's memory limit. Out of it a fixed overhead is reserved (code,
 * thread stacks, the Kafka clients' and libpq's fixed buffers, RocksDB's
 * per-store bookkeeping, allocator slack):
 *
 *     reserved = 64 MB + 256 KB per aggregation partition + 8 MB per stream thread
 *
 * and the rest, the budget, is shared by:
 *
 *     25 %  RocksDB write buffers (memtables) of all stores
 *     15 %  the RocksDB block cache, one LRU cache for all stores
 *     20 %  the engine's write cache (state/wstore.c), all stores together
 *     25 %  the stream threads' consumers' prefetch queues (split evenly)
 *      5 %  the restore consumers' prefetch queues (split evenly)
 *     10 %  the transactional producers' queues (split evenly)
 *
 * The consumer's share is the one throughput depends on: librdkafka 2.0.2
 * pauses every fetch of a consumer whose queue holds queued.min.messages
 * and sleeps up to a second; the stream thread wakes its fetchers once the
 * queue has drained (engine/worker.c, nudge_fetchers), and then 100,000 per
 * thread gives the throughput 300,000 gave without it (docs/performance.md
 * section 13; the default 1024 MB and 2 threads reach it). The producers'
 * queues are capped at 100,000 messages (40 MB a thread), which 10 % still
 * reaches at that default.
 *
 * RocksDB 7.8.3's C API has no write buffer manager (no
 * rocksdb_write_buffer_manager_*, and rocksdb_options_set_db_write_buffer_size
 * bounds one database, not a set of them), so the memtable share is divided
 * statically: every store gets write_buffer_size = share / (partitions * 2)
 * with 2 write buffers, sized for the worst case of this process owning
 * every aggregation partition (after a failover it may).
 *
 * Pure functions; @locality any thread.
 */
#ifndef RILL_MEMORY_H
#define RILL_MEMORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct rill_kafka_default {
        const char *key; /* NULL ends a list */
        char value[24];
} rill_kafka_default_t;

typedef struct rill_memplan {
        int64_t limit_mb, reserved_mb, budget_mb;
        size_t block_cache_bytes;
        size_t write_buffer_bytes; /* per store, RocksDB write_buffer_size */
        int max_write_buffers;     /* per store, max_write_buffer_number */
        size_t write_cache_bytes;  /* all stores of the process together */
        /* librdkafka defaults (a kafka.* / -X setting of the user wins) */
        rill_kafka_default_t consumer[5], restorer[5], producer[3];
} rill_memplan_t;

/** The smallest memory.limit.mb that fits partitions aggregation partitions
 *  and threads stream threads. */
int64_t rill_memplan_min_mb(int partitions, int threads);

/** Divide limit_mb (memory.limit.mb) for a process of threads stream threads
 *  that may own up to partitions aggregation partitions.
 *  @returns 0, or -1 with a one-line errstr (what, the values, what to do)
 *  when limit_mb is below rill_memplan_min_mb. */
int rill_memplan(int64_t limit_mb, int partitions, int threads, rill_memplan_t *p,
                 char *errstr, size_t errstr_size);

#endif
