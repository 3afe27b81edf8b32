/*
 * window.h -- tumbling and hopping window arithmetic on event time (pure
 * functions).
 *
 * Windows are [start, start + size) with start a multiple of the advance
 * (epoch aligned, as Flink's TUMBLE / HOP and Kafka Streams' TimeWindows
 * with advanceBy); tumbling windows are the case advance = size. An event
 * at ts belongs to every window with ts - size < start <= ts: size /
 * advance of them (rounded up). A window is closed once stream time >= end
 * + grace; a record is late when every window it belongs to is closed (its
 * last window, the one starting at rill_window_start(ts, advance), closes
 * last).
 *
 * Event times are bounded twice over:
 *   - Every accepted event time lies in [RILL_EVENT_TIME_MIN_MS,
 *     RILL_EVENT_TIME_MAX_MS] (years 1 to 9999), whatever the flags: the
 *     extract function rejects the others (apps/sales/event.c) and
 *     rill_event_time_valid() says which. With the bounded window size and
 *     grace (engine/config.c) start + size + grace of any accepted time is
 *     far inside int64, and window keys stay below the store's meta keys
 *     (state/wstore.c; checked at compile time below).
 *   - The functions here are still defined for every int64 (they saturate
 *     instead of overflowing), so a time that escaped validation makes a
 *     window that never closes, not undefined behaviour.
 */
#ifndef RILL_WINDOW_H
#define RILL_WINDOW_H
#include <stdint.h>

/** 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z in epoch ms. */
#define RILL_EVENT_TIME_MIN_MS (-62135596800000LL)
#define RILL_EVENT_TIME_MAX_MS 253402300799999LL
/** The ranges of window.size.ms and grace.ms (366 days each). */
#define RILL_WINDOW_SIZE_MAX_MS (366LL * 86400000)
#define RILL_GRACE_MAX_MS (366LL * 86400000)
/** Window starts whose store key sorts below the meta keys (first byte 0xff
 *  after the sign flip of rill_wkey_encode): start < 0x7f00000000000000. */
#define RILL_WINDOW_START_KEY_LIMIT 0x7f00000000000000LL

_Static_assert(RILL_EVENT_TIME_MAX_MS + RILL_WINDOW_SIZE_MAX_MS + RILL_GRACE_MAX_MS <
                   RILL_WINDOW_START_KEY_LIMIT,
               "the largest window end + grace must stay below the store's meta keys");
_Static_assert(RILL_EVENT_TIME_MIN_MS - RILL_WINDOW_SIZE_MAX_MS - RILL_GRACE_MAX_MS >
                   INT64_MIN / 2,
               "the smallest window start - size - grace must stay far inside int64");

/** True when ts_ms is an event time the engine accepts (years 1 to 9999). */
static inline int rill_event_time_valid(int64_t ts_ms) {
        return ts_ms >= RILL_EVENT_TIME_MIN_MS && ts_ms <= RILL_EVENT_TIME_MAX_MS;
}

/** Start of the window holding ts (floor division, also for negative ts).
 *  size_ms > 0. Below INT64_MIN + size the floor is not representable: the
 *  result is then INT64_MIN (still <= ts). */
static inline int64_t rill_window_start(int64_t ts_ms, int64_t size_ms) {
        int64_t r = ts_ms % size_ms, start;
        if (r >= 0)
                return ts_ms - r;
        if (__builtin_sub_overflow(ts_ms - r, size_ms, &start))
                return INT64_MIN;
        return start;
}

/** True when the window starting at start is closed at stream time st.
 *  An end + grace beyond int64 is never reached: such a window never closes. */
static inline int rill_window_closed(int64_t start, int64_t size_ms, int64_t grace_ms,
                                     int64_t stream_time) {
        int64_t end, close_at;
        if (__builtin_add_overflow(start, size_ms, &end) ||
            __builtin_add_overflow(end, grace_ms, &close_at))
                return 0; /* size > 0 and grace >= 0: it overflowed upwards */
        return stream_time >= close_at;
}

/** The most windows one event may belong to (window.size.ms / window.advance.ms). */
#define RILL_WINDOW_HOPS_MAX 256

/** Start of the first (earliest) window holding ts: the smallest multiple of
 *  advance greater than ts - size (the last is rill_window_start(ts,
 *  advance)). Unlike the functions above it does not saturate: defined for
 *  valid event times (rill_event_time_valid) and bounded sizes only, which
 *  is all it is called with. */
static inline int64_t rill_window_first_start(int64_t ts_ms, int64_t size_ms,
                                              int64_t advance_ms) {
        return rill_window_start(ts_ms - size_ms, advance_ms) + advance_ms;
}

/** Windows (of this size, starting every advance) with start < the
 *  returned bound are closed at stream time st (INT64_MIN: none is). */
int64_t rill_window_close_bound(int64_t size_ms, int64_t advance_ms, int64_t grace_ms,
                                int64_t stream_time);

/** Format epoch ms as ISO-8601 UTC ("2026-11-23T21:09:00Z", with .mmm when
 *  not whole seconds) into buf (>= 32 bytes). @returns length. */
int rill_iso8601(int64_t ms, char *buf, int size);

#endif
