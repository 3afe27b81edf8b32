/*
 * window.c -- the non-inline window helpers.
 */
#include "window.h"

#include <stdio.h>
#include <time.h>

int64_t rill_window_close_bound(int64_t size_ms, int64_t advance_ms, int64_t grace_ms,
                                int64_t stream_time) {
        /* closed  <=>  start + size + grace <= st  <=>  start <= st - size - grace;
         * starts are multiples of the advance, so the first still-open start
         * is the smallest multiple greater than x = st - size - grace. Below
         * int64 no window can start: none is closed. x - r (+ advance) <=
         * st - grace cannot overflow (advance <= size). */
        int64_t x;
        if (__builtin_sub_overflow(stream_time, size_ms, &x) ||
            __builtin_sub_overflow(x, grace_ms, &x))
                return INT64_MIN;
        int64_t r = x % advance_ms;
        return r >= 0 ? x - r + advance_ms : x - r;
}

int rill_iso8601(int64_t ms, char *buf, int size) {
        int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
        int msec = (int)(ms - sec * 1000);
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        /* not strftime's %Y: ISO-8601 wants four digits for years 1 to 999 too */
        int n = snprintf(buf, (size_t)size, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (msec)
                n += snprintf(buf + n, (size_t)(size - n), ".%03dZ", msec);
        else
                n += snprintf(buf + n, (size_t)(size - n), "Z");
        return n;
}
