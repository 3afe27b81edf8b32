/*
 * window.h -- tumbling window arithmetic on event time (pure functions).
 *
 * Windows are [start, start + size) with start a multiple of size (epoch
 * aligned, as Flink's TUMBLE and Kafka Streams' TimeWindows). A window is
 * closed once stream time >= end + grace; a record whose window is closed
 * is late.
 */
#ifndef RILL_WINDOW_H
#define RILL_WINDOW_H
#include <stdint.h>

/** Start of the window holding ts (floor division, also for negative ts). */
static inline int64_t rill_window_start(int64_t ts_ms, int64_t size_ms) {
        int64_t r = ts_ms % size_ms;
        return r < 0 ? ts_ms - r - size_ms : ts_ms - r;
}

/** True when the window starting at start is closed at stream time st. */
static inline int rill_window_closed(int64_t start, int64_t size_ms, int64_t grace_ms,
                                     int64_t stream_time) {
        return stream_time >= start + size_ms + grace_ms;
}

/** Windows with start < the returned bound are closed at stream time st. */
int64_t rill_window_close_bound(int64_t size_ms, int64_t grace_ms, int64_t stream_time);

/** Format epoch ms as ISO-8601 UTC ("2026-11-23T21:09:00Z", with .mmm when
 *  not whole seconds) into buf (>= 32 bytes). @returns length. */
int rill_iso8601(int64_t ms, char *buf, int size);

#endif
