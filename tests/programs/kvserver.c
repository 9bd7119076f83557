/* A tiny TCP key-value server and its load client, for `hotprobe iterate`.
 *
 *   kvserver serve PORT [--pidfile FILE] [--max-starts FILE N]
 *       Serves `SET key value` / `GET key` lines on 127.0.0.1:PORT until
 *       SIGTERM or SIGINT, then exits 0. --max-starts counts its starts in
 *       FILE and exits 3 at once from the (N+1)-th on (a server that fails
 *       to start in a later iteration).
 *   kvserver load PORT REQUESTS
 *       Sends REQUESTS requests (batches of 32 from a writer thread, so
 *       the server never waits for the client) while reading the replies;
 *       prints `throughput: N requests/s`.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))
#define SLOTS 4096
#define BATCH 32

struct slot { char key[32]; unsigned long value; int used; };
static struct slot table[SLOTS];
static volatile sig_atomic_t stopping;

static void on_stop(int sig) { (void)sig; stopping = 1; }

NOIPA static unsigned long hash(const char *s) {
    unsigned long h = 5381;
    while (*s && *s != ' ' && *s != '\n') h = h * 33 + (unsigned char)*s++;
    return h;
}

/* The request's real work: a value digest that takes a few microseconds. */
NOIPA static unsigned long digest(unsigned long v) {
    for (int i = 0; i < 3000; i++) v = v * 6364136223846793005ul + 1442695040888963407ul;
    return v;
}

NOIPA static struct slot *lookup(const char *key, int create) {
    unsigned long h = hash(key);
    for (int i = 0; i < SLOTS; i++) {
        struct slot *s = &table[(h + i) % SLOTS];
        size_t n = strcspn(key, " \n");
        if (s->used && strlen(s->key) == n && !strncmp(s->key, key, n)) return s;
        if (!s->used) {
            if (!create) return NULL;
            snprintf(s->key, sizeof s->key, "%.*s", (int)n, key);
            s->used = 1;
            return s;
        }
    }
    return NULL;
}

/* One request line; writes the reply into `out`, returns its length. */
NOIPA static int handle_request(const char *line, char *out) {
    /* Request accounting: a few hundred ns of the handler's own, so its
       inherent time sits well above the default threshold (0.06 µs) in every
       phase of the load rather than at it. */
    static volatile unsigned long accounted;
    unsigned long tag = (unsigned char)line[0];
    for (int i = 0; i < 200; i++) tag = tag * 2862933555777941757ul + 3037000493ul;
    accounted += tag;
    if (!strncmp(line, "SET ", 4)) {
        struct slot *s = lookup(line + 4, 1);
        const char *v = strchr(line + 4, ' ');
        if (!s || !v) return sprintf(out, "ERR\n");
        s->value = digest(strtoul(v + 1, NULL, 10));
        return sprintf(out, "OK\n");
    }
    if (!strncmp(line, "GET ", 4)) {
        struct slot *s = lookup(line + 4, 0);
        return s ? sprintf(out, "%lu\n", digest(s->value) % 1000) : sprintf(out, "NIL\n");
    }
    return sprintf(out, "ERR\n");
}

/* Serves the complete lines in the connection's buffer; returns 0 at EOF. */
NOIPA static int serve_client(int fd, char *buf, size_t *len) {
    ssize_t n = read(fd, buf + *len, 65536 - *len - 1);
    if (n <= 0) return 0;
    *len += (size_t)n;
    buf[*len] = 0;
    static char reply[65536 * 2];
    size_t rlen = 0;
    char *p = buf, *nl;
    while ((nl = memchr(p, '\n', buf + *len - p))) {
        rlen += (size_t)handle_request(p, reply + rlen);
        p = nl + 1;
    }
    *len -= (size_t)(p - buf);
    memmove(buf, p, *len);
    return write(fd, reply, rlen) == (ssize_t)rlen;
}

NOIPA static int start_limit(const char *file, long max) {
    long starts = 0;
    FILE *f = fopen(file, "r");
    if (f) { if (fscanf(f, "%ld", &starts) != 1) starts = 0; fclose(f); }
    f = fopen(file, "w");
    if (f) { fprintf(f, "%ld\n", starts + 1); fclose(f); }
    return starts >= max;
}

static int serve(int port, int argc, char **argv) {
    for (int i = 0; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--pidfile")) {
            FILE *f = fopen(argv[i + 1], "w");
            if (f) { fprintf(f, "%d\n", getpid()); fclose(f); }
        }
        if (!strcmp(argv[i], "--max-starts") && i + 2 < argc && start_limit(argv[i + 1], atol(argv[i + 2]))) {
            fprintf(stderr, "kvserver: refusing to start again\n");
            return 3;
        }
    }
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 16)) { perror("kvserver: bind"); return 1; }
    struct pollfd fds[17] = { { .fd = ls, .events = POLLIN } };
    static char bufs[16][65536];
    size_t lens[16] = { 0 };
    int n = 1;
    while (!stopping) {
        if (poll(fds, n, 100) < 0 && errno != EINTR) break;
        for (int i = n - 1; i >= 1; i--) {
            if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
            if (!serve_client(fds[i].fd, bufs[i - 1], &lens[i - 1])) {
                close(fds[i].fd);
                fds[i] = fds[n - 1];
                memcpy(bufs[i - 1], bufs[n - 2], lens[n - 2]);
                lens[i - 1] = lens[n - 2];
                n--;
            }
        }
        if ((fds[0].revents & POLLIN) && n < 17) {
            int c = accept(ls, NULL, NULL);
            if (c >= 0) { fds[n] = (struct pollfd){ .fd = c, .events = POLLIN }; lens[n - 1] = 0; n++; }
        }
    }
    printf("stopped\n");
    return 0;
}

struct sender { int fd; long requests; };

/* Writes every request (in batches of 32) while main reads the replies, so
   the server always has work queued. */
static void *send_all(void *arg) {
    struct sender *w = arg;
    char req[BATCH * 64];
    for (long sent = 0; sent < w->requests;) {
        size_t len = 0;
        for (int k = 0; k < BATCH && sent < w->requests; k++, sent++)
            len += (size_t)sprintf(req + len, sent % 4 ? "GET key%ld\n" : "SET key%ld %ld\n", sent / 4 % 500, sent);
        for (size_t off = 0; off < len;) {
            ssize_t n = write(w->fd, req + off, len - off);
            if (n <= 0) { perror("kvserver load: write"); exit(1); }
            off += (size_t)n;
        }
    }
    return NULL;
}

static int load(int port, long requests) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("kvserver load: connect"); return 1; }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct sender w = { fd, requests };
    pthread_t t;
    pthread_create(&t, NULL, send_all, &w);
    static char rep[65536];
    long replies = 0;
    while (replies < requests) {
        ssize_t n = read(fd, rep, sizeof rep);
        if (n <= 0) { fprintf(stderr, "kvserver load: the server closed the connection\n"); return 1; }
        for (ssize_t i = 0; i < n; i++) replies += rep[i] == '\n';
    }
    pthread_join(t, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("replies: %ld\nthroughput: %.0f requests/s\n", replies, replies / secs);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "serve")) return serve(atoi(argv[2]), argc - 3, argv + 3);
    if (argc >= 4 && !strcmp(argv[1], "load")) return load(atoi(argv[2]), atol(argv[3]));
    fprintf(stderr, "usage: kvserver serve PORT [--pidfile F] [--max-starts F N] | kvserver load PORT REQUESTS\n");
    return 2;
}
