/*
 * peer.c -- see peer.h. The HTTP client is deliberately tiny: one HTTP/1.0
 * GET on a fresh connection (libmicrohttpd closes it after the answer), one
 * deadline for connect, send and the whole read, and a cap on what is read.
 * A peer is another worker of the same application, so the answer is ours
 * too; still, its parser accepts only a well-formed status line and never
 * reads past the bytes received.
 *
 * Name resolution is the one step the deadline does not cover: numeric
 * addresses (what the broker reports for a member) never wait; a host name
 * waits at most what /etc/resolv.conf allows (timeout x attempts).
 */
#include "peer.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- the advertisement ------------------------------------------------------------ */

/* A host as we accept it: letters, digits, '.', '-', '_' and ':' (IPv6). */
static int host_ok(const char *s, size_t n) {
        if (!n || n >= RILL_PEER_HOST_MAX)
                return 0;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '-' || c == '_' || c == ':'))
                        return 0;
        }
        return 1;
}

int rill_peer_advertise(char *buf, size_t size, const char *base, const char *host, int port) {
        if (!size)
                return -1;
        host = host ? host : "";
        int n;
        if (port < 1 || port > 65535 || (*host && !host_ok(host, strlen(host))))
                n = -1;
        else if (strchr(host, ':'))
                n = snprintf(buf, size, "%s%s[%s]:%d", base, RILL_PEER_TAG, host, port);
        else
                n = snprintf(buf, size, "%s%s%s:%d", base, RILL_PEER_TAG, host, port);
        if (n >= 0 && (size_t)n < size)
                return 0;
        snprintf(buf, size, "%s", strlen(base) < size ? base : "");
        return -1;
}

int rill_peer_endpoint(const char *client_id, const char *broker_host, char *host,
                       size_t host_size, int *port) {
        if (!client_id || host_size < RILL_PEER_HOST_MAX)
                return -1;
        const char *tag = NULL;
        for (const char *s = strstr(client_id, RILL_PEER_TAG); s; s = strstr(s + 1, RILL_PEER_TAG))
                tag = s; /* the last one: an application id could contain the tag */
        if (!tag)
                return -1;
        const char *a = tag + strlen(RILL_PEER_TAG), *hs = a, *he;
        if (*a == '[') { /* [v6]:port */
                hs = a + 1;
                he = strchr(hs, ']');
                if (!he || he[1] != ':')
                        return -1;
                a = he + 2;
        } else {
                he = strrchr(a, ':');
                if (!he || memchr(a, ':', (size_t)(he - a)))
                        return -1; /* a bare IPv6 address must be bracketed */
                a = he + 1;
        }
        long p = 0;
        if (!*a || strlen(a) > 5)
                return -1;
        for (const char *d = a; *d; d++) {
                if (*d < '0' || *d > '9')
                        return -1;
                p = p * 10 + (*d - '0');
        }
        if (p < 1 || p > 65535)
                return -1;
        size_t n = (size_t)(he - hs);
        if (n) {
                if (!host_ok(hs, n))
                        return -1;
                memcpy(host, hs, n);
                host[n] = '\0';
        } else { /* the broker's view: "/10.1.2.3" (Java's InetAddress form) */
                const char *b = broker_host ? broker_host : "";
                const char *slash = strchr(b, '/');
                if (slash)
                        b = slash + 1;
                n = strlen(b);
                if (!host_ok(b, n))
                        return -1;
                memcpy(host, b, n + 1);
        }
        *port = (int)p;
        return 0;
}

/* ---- the response ----------------------------------------------------------------- */

int rill_peer_parse_response(const char *buf, size_t len, int *status, size_t *body_off) {
        static const char v[] = "HTTP/1.";
        if (len < 12 || memcmp(buf, v, 7) || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ')
                return -1;
        int s = 0;
        for (int i = 9; i < 12; i++) {
                if (buf[i] < '0' || buf[i] > '9')
                        return -1;
                s = s * 10 + (buf[i] - '0');
        }
        if (s < 100 || s > 599 || (len > 12 && buf[12] != ' ' && buf[12] != '\r'))
                return -1;
        for (size_t i = 12; i + 3 < len; i++)
                if (!memcmp(buf + i, "\r\n\r\n", 4)) {
                        *status = s;
                        *body_off = i + 4;
                        return 0;
                }
        return -1; /* no end of the headers */
}

int rill_peer_urlencode(rill_jbuf_t *b, const char *s, size_t len) {
        static const char hex[] = "0123456789ABCDEF";
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~') {
                        if (rill_jbuf_add(b, (const char *)&c, 1))
                                return -1;
                } else {
                        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
                        if (rill_jbuf_add(b, e, 3))
                                return -1;
                }
        }
        return 0;
}

/* ---- the request ------------------------------------------------------------------ */

static long long mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until the deadline. @returns 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline) {
        for (;;) {
                long long left = deadline - mono_ms();
                if (left <= 0)
                        return 0;
                struct pollfd pfd = {fd, events, 0};
                int rc = poll(&pfd, 1, (int)left);
                if (rc < 0 && errno == EINTR)
                        continue;
                return rc < 0 ? -1 : rc > 0;
        }
}

static int connect_to(const char *host, int port, long long deadline, char *errstr,
                      size_t errstr_size) {
        char ps[8];
        snprintf(ps, sizeof(ps), "%d", port);
        struct addrinfo hints = {0}, *ai = NULL;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        int rc = getaddrinfo(host, ps, &hints, &ai);
        if (rc == EAI_NONAME) {
                hints.ai_flags = AI_NUMERICSERV;
                rc = getaddrinfo(host, ps, &hints, &ai);
        }
        if (rc) {
                snprintf(errstr, errstr_size, "cannot resolve %s: %s", host, gai_strerror(rc));
                return -1;
        }
        int fd = -1, err = 0;
        for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
                fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            a->ai_protocol);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                if (connect(fd, a->ai_addr, a->ai_addrlen) && errno != EINPROGRESS) {
                        err = errno;
                } else {
                        int ready = wait_fd(fd, POLLOUT, deadline);
                        socklen_t l = sizeof(err);
                        if (ready <= 0)
                                err = ready ? errno : ETIMEDOUT;
                        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l))
                                err = errno;
                        if (!err)
                                break;
                }
                close(fd);
                fd = -1;
        }
        freeaddrinfo(ai);
        if (fd < 0)
                snprintf(errstr, errstr_size, "cannot connect to %s:%d: %s", host, port,
                         strerror(err ? err : ECONNREFUSED));
        return fd;
}

int rill_peer_get(const char *host, int port, const char *path, const char *forwarded_by,
                  int timeout_ms, int *status, rill_jbuf_t *body, char *errstr,
                  size_t errstr_size) {
        long long deadline = mono_ms() + timeout_ms;
        rill_jbuf_t req, resp;
        rill_jbuf_init(&req, 16384);
        rill_jbuf_init(&resp, RILL_PEER_RESPONSE_MAX);
        int v6 = strchr(host, ':') != NULL, rc = -1;
        rill_jbuf_printf(&req, "GET %s HTTP/1.0\r\nHost: %s%s%s:%d\r\n%s: %s\r\n\r\n", path,
                         v6 ? "[" : "", host, v6 ? "]" : "", port, RILL_PEER_FORWARDED,
                         forwarded_by);
        if (req.failed) {
                snprintf(errstr, errstr_size, "request to %s:%d too large", host, port);
                rill_jbuf_free(&req);
                return -1;
        }
        int fd = connect_to(host, port, deadline, errstr, errstr_size);
        if (fd < 0) {
                rill_jbuf_free(&req);
                return -1;
        }
        size_t sent = 0;
        while (sent < req.len) {
                int w = wait_fd(fd, POLLOUT, deadline);
                ssize_t n = w > 0 ? send(fd, req.p + sent, req.len - sent, MSG_NOSIGNAL) : -1;
                if (n < 0 && w > 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n < 0) {
                        snprintf(errstr, errstr_size, "cannot send to %s:%d: %s", host, port,
                                 w == 0 ? "timed out" : strerror(errno));
                        goto done;
                }
                sent += (size_t)n;
        }
        char chunk[16384];
        for (;;) {
                int w = wait_fd(fd, POLLIN, deadline);
                if (w <= 0) {
                        snprintf(errstr, errstr_size, "no answer from %s:%d within %d ms", host,
                                 port, timeout_ms);
                        goto done;
                }
                ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n < 0) {
                        snprintf(errstr, errstr_size, "cannot read from %s:%d: %s", host, port,
                                 strerror(errno));
                        goto done;
                }
                if (n == 0)
                        break;
                if (rill_jbuf_add(&resp, chunk, (size_t)n)) {
                        snprintf(errstr, errstr_size, "answer from %s:%d larger than %d bytes",
                                 host, port, RILL_PEER_RESPONSE_MAX);
                        goto done;
                }
        }
        size_t off;
        if (!resp.len || rill_peer_parse_response(resp.p, resp.len, status, &off)) {
                snprintf(errstr, errstr_size, "not an HTTP answer from %s:%d (%zu bytes)", host,
                         port, resp.len);
                goto done;
        }
        rill_jbuf_reset(body);
        if (rill_jbuf_add(body, resp.p + off, resp.len - off)) {
                snprintf(errstr, errstr_size, "answer from %s:%d too large", host, port);
                goto done;
        }
        rc = 0;
done:
        close(fd);
        rill_jbuf_free(&req);
        rill_jbuf_free(&resp);
        return rc;
}
