/*
 * log.c -- structured log lines. The level and format are set once before
 * the stream threads start and only read afterwards, so no lock is needed
 * beyond the stdio lock that keeps one line whole.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static rill_log_level_t min_level = RILL_LOG_INFO;
static int json_format;
static const char *names[] = {"debug", "info", "warn", "error"};

int rill_log_configure(const char *level, const char *format) {
        int found = 0;
        for (int i = 0; i < 4; i++)
                if (level && !strcmp(level, names[i])) {
                        min_level = (rill_log_level_t)i;
                        found = 1;
                }
        if (!found)
                return -1;
        if (format && !strcmp(format, "json"))
                json_format = 1;
        else if (format && strcmp(format, "logfmt"))
                return -1;
        return 0;
}

void rill_log(rill_log_level_t level, const char *event, const char *fmt, ...) {
        if (level < min_level)
                return;
        char msg[1536], ts[40], line[3400];
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (json_format) {
                /* msg is escaped for the two characters that can break JSON here */
                char esc[sizeof(msg) * 2];
                size_t j = 0;
                for (size_t i = 0; msg[i] && j + 2 < sizeof(esc); i++) {
                        if (msg[i] == '"' || msg[i] == '\\')
                                esc[j++] = '\\';
                        esc[j++] = (unsigned char)msg[i] < 0x20 ? ' ' : msg[i];
                }
                esc[j] = '\0';
                snprintf(line, sizeof(line),
                         "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"%s\",\"msg\":\"%s\"}\n", ts,
                         names[level], event, esc);
        } else {
                snprintf(line, sizeof(line), "ts=%s level=%s event=%s %s\n", ts, names[level],
                         event, msg);
        }
        fputs(line, stderr);
}
