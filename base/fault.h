/*
 * fault.h -- named fault-injection points for the crash-recovery tests.
 *
 * RILL_FAULT=<point>[:<n>] makes the process die on the spot (SIGKILL to
 * itself: no cleanup, no flush, no atexit) the n-th time (default 1st) that
 * point is reached. Without the variable every point is a cheap no-op.
 * With RILL_FAULT_PAUSE_MS=<ms> the point freezes the calling thread for that
 * long instead (a stalled stream thread whose librdkafka threads go on);
 * with RILL_FAULT_EVERY=1 as well, at every hit from the n-th on (a slow
 * step, e.g. a restore throttled at each of its batches).
 * Points: before_pg_commit, after_pg_commit, before_kafka_commit, after_kafka_commit,
 * mid_restore, restore_begin (a task's restore about to read its changelog's
 * end offsets), in_rebalance, results_in_flight, closing_windows.
 * Fail points make a call fail instead (rill_fault_fail): abort_unanswered,
 * an abort of the transaction that the coordinator never answers, so the
 * thread gives up on it (with RILL_FAULT_EVERY=1, every abort from the n-th);
 * rewind_refused, the seek back to the last commit after an abort, given up
 * at once (as librdkafka does while a rebalance is pending); fetch_behind and
 * position_behind, a task that starts running with its input 20 records
 * before its committed position (as when librdkafka's own read of the
 * committed offset is older than the task's): first as the records dropped
 * before it ran, then as its consumer's fetch position; batch_refetch, the
 * n-th polled batch handled as one during which a rebalance callback ran
 * (not processed, its tasks sought back to their positions);
 * kafka_commit_lost, a Kafka commit the broker acknowledged and then lost
 * (a coordinator that skipped its markers, the transaction aborted later:
 * docs/troubleshooting.md): the transaction is aborted in place of the
 * commit, the thread applies it to its stores as committed, and the
 * process dies (rill_fault_die).
 */
#ifndef RILL_FAULT_H
#define RILL_FAULT_H

/** Read RILL_FAULT. @returns -1 and fills errstr for an unknown point.
 *  @locality application thread, before threads start. */
int rill_fault_init(char *errstr, size_t errstr_size);

/** Reach a fault point. @locality any thread (the hit counter is atomic). */
void rill_fault(const char *point);

/** Reach a fail point. @returns 1 when it fires: the caller fails the call
 *  it guards as the real failure would. @locality any thread. */
int rill_fault_fail(const char *point);

/** Die on the spot as a fault point does (SIGKILL to itself), for a fail
 *  point whose scenario ends with a crash. @locality any thread. */
void rill_fault_die(void);

#endif
