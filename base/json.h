/*
 * json.h -- the JSON the engine writes by hand: string literals (keys in
 * HTTP answers; the sales app uses them for its output), a growable buffer
 * with a size cap, and the body of the interactive-query answer.
 *
 * Everything written here is valid JSON whatever the input bytes are: '"',
 * '\' and control characters are escaped, and a byte that is not part of a
 * well-formed UTF-8 sequence becomes U+FFFD, so a strict parser (Python's
 * json, jansson) always accepts the output. Nothing here touches engine
 * state, so the /query answer can be unit-tested and fuzzed without a
 * server (tests/unit/test_json.c, tests/fuzz/fuzz_query.c).
 *
 * @locality any thread; no shared state.
 */
#ifndef RILL_JSON_H
#define RILL_JSON_H
#include <stddef.h>
#include <stdint.h>

/* ---- string literals ------------------------------------------------------------- */

/** Largest literal rill_json_string can write for len input bytes,
 *  quotes and the terminating NUL included (every byte as \u00XX). */
#define RILL_JSON_STRING_MAX(len) (6 * (size_t)(len) + 3)

/** Write s as a quoted JSON string into buf, NUL-terminated. @returns the
 *  length written (without the NUL), or 0 if it did not fit; then buf holds
 *  the empty string (when size > 0), never a partial literal. */
size_t rill_json_string(const char *s, size_t len, char *buf, size_t size);

/* ---- a growable buffer with a cap ------------------------------------------------ */

/** Text that grows up to `limit` bytes. Once an append would pass the limit
 *  or an allocation fails, `failed` is set and every later append is a
 *  no-op: callers check it once at the end instead of after every append. */
typedef struct rill_jbuf {
        char *p; /* NUL-terminated while len > 0 */
        size_t len, size, limit;
        int failed;
} rill_jbuf_t;

void rill_jbuf_init(rill_jbuf_t *b, size_t limit);
void rill_jbuf_free(rill_jbuf_t *b);
/** Forget the content (keeps the memory), e.g. to replace a half-written
 *  body by an error. Clears `failed`. */
void rill_jbuf_reset(rill_jbuf_t *b);
/** @returns 0, or -1 when the buffer failed (now or before). */
int rill_jbuf_add(rill_jbuf_t *b, const char *s, size_t n);
int rill_jbuf_printf(rill_jbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Append s as a quoted JSON string (see the escaping rules above). */
int rill_jbuf_string(rill_jbuf_t *b, const char *s, size_t len);

/* ---- the /query answer ----------------------------------------------------------- */

#define RILL_QUERY_KEY_MAX 1024      /* longest key a query may ask for, in bytes */
#define RILL_QUERY_WINDOWS_MAX 1000  /* windows in one answer; more: "truncated":true */
#define RILL_QUERY_FIGURES_MAX 16    /* figures of one window */
/* The longest answer: the escaped key and instance plus RILL_QUERY_WINDOWS_MAX
 * windows of ~100 bytes and a few figures each fit with room to spare (more
 * than a MiB: 500, "query answer too large"). */
#define RILL_QUERY_BODY_MAX (1024 * 1024)

/** One figure of a window's aggregate: its name and an integer or a double. */
typedef struct rill_qfigure {
        const char *name;
        int is_double;
        int64_t i;
        double d;
} rill_qfigure_t;

/** One committed window of the queried key. */
typedef struct rill_qwindow {
        int32_t partition;
        int64_t start_ms, end_ms;
        int nfigures; /* 0..RILL_QUERY_FIGURES_MAX */
        rill_qfigure_t f[RILL_QUERY_FIGURES_MAX];
} rill_qwindow_t;

/** The windows a lookup found: it appends to v[cnt..max) and sets truncated
 *  when it had more than fit. */
typedef struct rill_qresult {
        rill_qwindow_t *v;
        size_t cnt, max;
        int truncated;
} rill_qresult_t;

/** Collect the committed windows of key into res. @returns 0, or -1 on a
 *  store error (the message in errstr; it is logged, not sent). */
typedef int (*rill_query_lookup_fn)(void *opaque, const char *key, size_t key_len,
                                    rill_qresult_t *res, char *errstr, size_t errstr_size);

/** Answer GET /query?key=K: validate the key (NULL = no key parameter), run
 *  the lookup, and write the JSON body into body (replacing its content):
 *    200 {"key":K,"instance":I,"windows":[{"partition":..,"window_start_ms":..,
 *         "window_end_ms":..,<figure name>:<value>,..},..],"truncated":false}
 *        (a double that is not finite is null)
 *    404 the same with no windows (another process owns the key's partition)
 *    400 {"error":..} no key, an empty key or one longer than RILL_QUERY_KEY_MAX
 *    500 {"error":..} the lookup failed
 *  The body always ends with a newline and is valid JSON of at most
 *  RILL_QUERY_BODY_MAX bytes (if even the error does not fit, as after an
 *  allocation failure, body->failed is set and the caller answers 500).
 *  @returns the HTTP status. */
int rill_query_answer(const char *key, size_t key_len, const char *instance,
                      rill_query_lookup_fn lookup, void *opaque, rill_jbuf_t *body);

#endif
