/*
 * log.c -- structured log lines. The level and format are set once before
 * the stream threads start and only read afterwards, so no lock is needed
 * beyond the stdio lock that keeps one line whole.
 *
 * Every line parses, whatever the values hold. Callers write logfmt in the
 * format string (`thread=%s error=\"%s\"`) and pass raw values: an error from
 * Postgres or librdkafka may contain quotes, backslashes, newlines and tabs.
 * So rill_log does not hand the format to vsnprintf as a whole: it walks it,
 * copies the literal text, formats each number conversion with snprintf, and
 * escapes each string argument for the place it stands in:
 *   - inside quotes in the format (`key=\"%s\"`): the value is escaped
 *     (\" \\ \n \r \t, \u00XX for other control bytes and for bytes that are
 *     not valid UTF-8), the format's own quotes close it;
 *   - bare (`key=%s`): the value is written as is when it is a plain token,
 *     else quoted and escaped as above.
 * A %s is therefore meant to be a whole value; width on %s is ignored. The
 * escapes are those of JSON strings (and of Go's logfmt), so the JSON format
 * embeds the logfmt text as its "msg" string with one more JSON escaping.
 * A line too long for the buffer is cut at an escape boundary, its open
 * quote closed and `truncated=true` appended.
 */
#include "log.h"

#include <librdkafka/rdkafka.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
        else if (!format || !strcmp(format, "logfmt"))
                json_format = 0;
        else
                return -1;
        return 0;
}

/* ---- a bounded output buffer -------------------------------------------------------- */

/* room kept at the end for a closing quote and " truncated=true" */
#define RESERVE 24

typedef struct {
        char *p;
        size_t cap, len;
        int full;
} sbuf_t;

static void put(sbuf_t *b, const char *s, size_t n) {
        if (b->full || b->len + n + RESERVE > b->cap) {
                b->full = 1;
                return;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

/* Appends even into the reserve (closing quote, truncation marker). */
static void put_reserved(sbuf_t *b, const char *s) {
        size_t n = strlen(s);
        if (b->len + n + 1 > b->cap)
                return;
        memcpy(b->p + b->len, s, n + 1);
        b->len += n;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
        size_t len;
        uint32_t cp;
        if (s[0] < 0x80)
                return 1;
        if ((s[0] & 0xe0) == 0xc0)
                len = 2, cp = s[0] & 0x1f;
        else if ((s[0] & 0xf0) == 0xe0)
                len = 3, cp = s[0] & 0x0f;
        else if ((s[0] & 0xf8) == 0xf0)
                len = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0; /* overlong, out of range or a surrogate */
        return len;
}

/* Appends s[0..n) escaped for the inside of a double-quoted string (the same
 * escapes in logfmt and JSON). Stops at an escape boundary when full. */
static void put_escaped(sbuf_t *b, const char *s, size_t n) {
        const unsigned char *u = (const unsigned char *)s;
        for (size_t i = 0; i < n && !b->full;) {
                unsigned char c = u[i];
                char e[8];
                if (c == '"' || c == '\\') {
                        e[0] = '\\', e[1] = (char)c;
                        put(b, e, 2);
                        i++;
                } else if (c == '\n' || c == '\r' || c == '\t') {
                        e[0] = '\\', e[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
                        put(b, e, 2);
                        i++;
                } else if (c < 0x20 || c == 0x7f) {
                        snprintf(e, sizeof(e), "\\u%04x", c);
                        put(b, e, 6);
                        i++;
                } else {
                        size_t l = utf8_len(u + i, n - i);
                        if (l) {
                                put(b, s + i, l);
                                i += l;
                        } else { /* not UTF-8: keep the byte's value, as latin-1 */
                                snprintf(e, sizeof(e), "\\u%04x", c);
                                put(b, e, 6);
                                i++;
                        }
                }
        }
}

/* A bare logfmt value: non-empty, no space, quote, '=', backslash or control byte. */
static int is_bare(const char *s, size_t n) {
        if (!n)
                return 0;
        const unsigned char *u = (const unsigned char *)s;
        for (size_t i = 0; i < n;) {
                if (u[i] <= 0x20 || u[i] == '"' || u[i] == '=' || u[i] == '\\' || u[i] == 0x7f)
                        return 0;
                size_t l = utf8_len(u + i, n - i);
                if (!l)
                        return 0;
                i += l;
        }
        return 1;
}

static void put_value(sbuf_t *b, const char *s, size_t n, int in_quotes) {
        if (in_quotes)
                put_escaped(b, s, n);
        else if (is_bare(s, n))
                put(b, s, n);
        else {
                put(b, "\"", 1);
                if (b->full)
                        return;
                put_escaped(b, s, n);
                put_reserved(b, "\""); /* closed even when cut short */
        }
}

/* ---- the format walker ---------------------------------------------------------------- */

/* Formats fmt with ap into b, escaping string arguments (see the top comment).
 * Supports the printf conversions the engine uses: flags, width, precision
 * (digits or *), the length modifiers hh h l ll z j t L, and d i u o x X c s
 * p f F e E g G a A %. An unknown conversion is copied literally and ends the
 * walk (its argument type is unknown), which -Wformat prevents at compile
 * time anyway. */
static void format_escaped(sbuf_t *b, const char *fmt, va_list ap) {
        int in_quotes = 0;
        for (const char *f = fmt; *f && !b->full;) {
                if (*f != '%') {
                        if (*f == '"')
                                in_quotes = !in_quotes;
                        put(b, f++, 1);
                        continue;
                }
                const char *start = f++;
                char spec[48];
                size_t sl = 0;
                int prec = -1;
                spec[sl++] = '%';
                while (*f && strchr("-+ #0", *f) && sl < 8)
                        spec[sl++] = *f++;
                if (*f == '*') {
                        sl += (size_t)snprintf(spec + sl, sizeof(spec) - sl, "%d", va_arg(ap, int));
                        f++;
                } else
                        while (*f >= '0' && *f <= '9' && sl < 20)
                                spec[sl++] = *f++;
                if (*f == '.') {
                        spec[sl++] = *f++;
                        if (*f == '*') {
                                prec = va_arg(ap, int);
                                sl += (size_t)snprintf(spec + sl, sizeof(spec) - sl, "%d", prec);
                                f++;
                        } else {
                                prec = 0;
                                while (*f >= '0' && *f <= '9' && sl < 32) {
                                        prec = prec * 10 + (*f - '0');
                                        spec[sl++] = *f++;
                                }
                        }
                }
                char len[3] = {0};
                if ((f[0] == 'h' && f[1] == 'h') || (f[0] == 'l' && f[1] == 'l'))
                        len[0] = f[0], len[1] = f[1], f += 2;
                else if (*f && strchr("hlzjtL", *f))
                        len[0] = *f++;
                char conv = *f ? *f++ : '\0';
                memcpy(spec + sl, len, strlen(len));
                sl += strlen(len);
                spec[sl++] = conv;
                spec[sl] = '\0';
                char num[128];
                int n = -1;
                switch (conv) {
                case '%':
                        put(b, "%", 1);
                        continue;
                case 's': {
                        const char *s = va_arg(ap, const char *);
                        if (!s)
                                s = "(null)";
                        size_t sn = prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s);
                        put_value(b, s, sn, in_quotes);
                        continue;
                }
                case 'c': {
                        char ch = (char)va_arg(ap, int);
                        put_value(b, &ch, 1, in_quotes);
                        continue;
                }
                case 'p':
                        n = snprintf(num, sizeof(num), spec, va_arg(ap, void *));
                        break;
                case 'd':
                case 'i':
                        if (!strcmp(len, "ll"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, long long));
                        else if (!strcmp(len, "l"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, long));
                        else if (!strcmp(len, "z"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, ptrdiff_t));
                        else if (!strcmp(len, "j"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, intmax_t));
                        else if (!strcmp(len, "t"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, ptrdiff_t));
                        else
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, int));
                        break;
                case 'u':
                case 'o':
                case 'x':
                case 'X':
                        if (!strcmp(len, "ll"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, unsigned long long));
                        else if (!strcmp(len, "l"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, unsigned long));
                        else if (!strcmp(len, "z"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, size_t));
                        else if (!strcmp(len, "j"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, uintmax_t));
                        else if (!strcmp(len, "t"))
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, size_t));
                        else
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, unsigned int));
                        break;
                case 'f':
                case 'F':
                case 'e':
                case 'E':
                case 'g':
                case 'G':
                case 'a':
                case 'A':
                        if (len[0] == 'L')
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, long double));
                        else
                                n = snprintf(num, sizeof(num), spec, va_arg(ap, double));
                        break;
                default: /* unknown: copy it and stop, the argument list is no longer known */
                        put_value(b, start, (size_t)(f - start), 1);
                        return;
                }
                if (n > 0)
                        put(b, num, (size_t)n < sizeof(num) ? (size_t)n : sizeof(num) - 1);
        }
        if (b->full) {
                if (in_quotes)
                        put_reserved(b, "\"");
                put_reserved(b, " truncated=true");
        }
}

/* ---- the public entry ------------------------------------------------------------------- */

void rill_log(rill_log_level_t level, const char *event, const char *fmt, ...) {
        if (level < min_level)
                return;
        char msg[2048], ts[40], line[sizeof(msg) * 4 + 256];
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
        sbuf_t m = {msg, sizeof(msg), 0, 0};
        msg[0] = '\0';
        va_list ap;
        va_start(ap, fmt);
        format_escaped(&m, fmt, ap);
        va_end(ap);
        sbuf_t l = {line, sizeof(line), 0, 0};
        line[0] = '\0';
        const char *ev = event ? event : "";
        if (json_format) {
                put(&l, "{\"ts\":\"", 7);
                put(&l, ts, strlen(ts));
                put(&l, "\",\"level\":\"", 11);
                put(&l, names[level], strlen(names[level]));
                put(&l, "\",\"event\":\"", 11);
                put_escaped(&l, ev, strlen(ev));
                put(&l, "\",\"msg\":\"", 9);
                put_escaped(&l, msg, m.len);
                put_reserved(&l, "\"}\n");
        } else {
                put(&l, "ts=", 3);
                put(&l, ts, strlen(ts));
                put(&l, " level=", 7);
                put(&l, names[level], strlen(names[level]));
                put(&l, " event=", 7);
                put_value(&l, ev, strlen(ev), 0);
                if (m.len)
                        put(&l, " ", 1);
                put(&l, msg, m.len);
                put_reserved(&l, "\n");
        }
        fputs(line, stderr);
}

/* librdkafka's log lines as our own (its level 0-7 is syslog's). */
void rill_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        rill_log_level_t l = level <= 3 ? RILL_LOG_ERROR : level <= 4 ? RILL_LOG_WARN
                           : level <= 6 ? RILL_LOG_INFO : RILL_LOG_DEBUG;
        if (!strcmp(fac, "CONFWARN"))
                l = RILL_LOG_DEBUG;
        rill_log(l, "librdkafka", "client=%s facility=%s message=\"%s\"", rd_kafka_name(rk), fac, buf);
}
