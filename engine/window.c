/*
 * window.c -- the non-inline window helpers.
 */
#include "window.h"

#include <stdio.h>
#include <time.h>

int64_t rill_window_close_bound(int64_t size_ms, int64_t grace_ms, int64_t stream_time) {
        /* closed  <=>  start + size + grace <= st  <=>  start <= st - size - grace;
         * starts are multiples of size, so the first still-open start is the
         * smallest multiple greater than st - size - grace. */
        int64_t last_closed = rill_window_start(stream_time - size_ms - grace_ms, size_ms);
        return last_closed + size_ms;
}

int rill_iso8601(int64_t ms, char *buf, int size) {
        int64_t sec = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
        int msec = (int)(ms - sec * 1000);
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        int n = (int)strftime(buf, (size_t)size, "%Y-%m-%dT%H:%M:%S", &tm);
        if (msec)
                n += snprintf(buf + n, (size_t)(size - n), ".%03dZ", msec);
        else
                n += snprintf(buf + n, (size_t)(size - n), "Z");
        return n;
}
