/* kvstore — a small key-value store that behaves like a real service, and
 * its own load generator, so that one command is a whole workload.
 *
 *   request parser -> command execution -> write-ahead log (checksummed
 *   records, written to a temporary file, truncated at each flush)
 *                                       -> memtable (a skip list)
 *                                       -> sorted runs with bloom filters,
 *                                          merged by periodic compaction
 *
 * The built-in load generator (YCSB-like) first loads every key, then sends
 * batches of text requests: 70 % GET, 25 % SET, 5 % DEL over a skewed key
 * distribution, plus a rare INFO and CHECKPOINT (admin commands). Values are
 * checksummed (CRC-32) when written and verified when read.
 *
 * Hot paths: serving a batch, GET and SET, the WAL append and its writes.
 * Cold paths: configuration, start-up, admin commands, shutdown.
 *
 * Usage: kvstore [--requests N] [--keys N] [--config FILE] [--seed N]
 * The results on stdout are deterministic; the throughput goes to stderr.
 * Build: gcc -O2 -g -o kvstore kvstore.c
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))
#define KEY_MAX 24
#define MAX_LEVEL 16

/* ---------------------------------------------------------------- config */

struct config {
    long memtable_limit; /* entries before the memtable is flushed to a run */
    long max_runs;       /* runs before compaction merges the newest two */
    long value_size;
    long batch;          /* requests per batch, as a client pipelines them */
    long keys;
    long requests;
    unsigned long seed;
    char wal_dir[256];
};

static const char *default_config =
    "# kvstore defaults\n"
    "memtable_limit = 8192\n"
    "max_runs = 4\n"
    "value_size = 512\n"
    "batch = 64\n"
    "keys = 20000\n"
    "requests = 700000\n"
    "seed = 42\n"
    "wal_dir = /tmp\n";

NOINLINE static int config_set(struct config *c, const char *key, const char *val) {
    long n = atol(val);
    if (!strcmp(key, "memtable_limit")) c->memtable_limit = n;
    else if (!strcmp(key, "max_runs")) c->max_runs = n;
    else if (!strcmp(key, "value_size")) c->value_size = n;
    else if (!strcmp(key, "batch")) c->batch = n;
    else if (!strcmp(key, "keys")) c->keys = n;
    else if (!strcmp(key, "requests")) c->requests = n;
    else if (!strcmp(key, "seed")) c->seed = (unsigned long)n;
    else if (!strcmp(key, "wal_dir")) snprintf(c->wal_dir, sizeof c->wal_dir, "%s", val);
    else return -1;
    return 0;
}

/* Parses `key = value` lines; `#` starts a comment. */
NOINLINE static void load_config(struct config *c, const char *text) {
    char line[512];
    while (*text) {
        size_t n = strcspn(text, "\n");
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), text);
        text += n + (text[n] == '\n');
        char *hash = strchr(line, '#'), *eq = strchr(line, '=');
        if (hash) *hash = 0;
        if (!eq || (hash && eq > hash)) continue;
        *eq = 0;
        char *key = line, *val = eq + 1, *end;
        while (*key == ' ') key++;
        for (end = eq - 1; end >= key && *end == ' '; end--) *end = 0;
        while (*val == ' ') val++;
        for (end = val + strlen(val) - 1; end >= val && *end == ' '; end--) *end = 0;
        if (config_set(c, key, val)) fprintf(stderr, "kvstore: unknown setting `%s`\n", key);
    }
}

NOINLINE static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(2); }
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------- checksums */

static uint32_t crc_table[256];

NOINLINE static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static inline uint32_t crc32_update(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* FNV-1a, for the bloom filters. */
NOINLINE static uint64_t hash_key(const char *key, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return h;
}

/* ------------------------------------------------------- write-ahead log */

struct wal {
    int fd;
    char path[300];
    char *buf;
    size_t len, cap;
    long records, writes, truncations;
};

NOINLINE static void wal_open(struct wal *w, const char *dir) {
    snprintf(w->path, sizeof w->path, "%s/kvstore-wal-XXXXXX", dir);
    w->fd = mkstemp(w->path);
    if (w->fd < 0) { perror(w->path); exit(2); }
    w->cap = 1 << 16;
    w->buf = malloc(w->cap);
}

NOINLINE static void wal_write(struct wal *w) {
    if (w->len && write(w->fd, w->buf, w->len) != (ssize_t)w->len) { perror("wal write"); exit(2); }
    w->len = 0;
    w->writes++;
}

/* One record: op, key length, value length, CRC-32 of all of it, then key and value. */
NOINLINE static void wal_append(struct wal *w, char op, const char *key, size_t klen, const char *val, size_t vlen) {
    size_t need = 12 + klen + vlen;
    if (w->len + need > w->cap) wal_write(w);
    unsigned char *r = (unsigned char *)w->buf + w->len;
    uint32_t lens[2] = { (uint32_t)klen | (uint32_t)op << 24, (uint32_t)vlen };
    memcpy(r, lens, 8);
    memcpy(r + 12, key, klen);
    if (vlen) memcpy(r + 12 + klen, val, vlen);
    uint32_t crc = crc32_update(crc32_update(0, r, 8), r + 12, klen + vlen);
    memcpy(r + 8, &crc, 4);
    w->len += need;
    w->records++;
}

/* After a flush the memtable's records are in a run: the log starts over. */
NOINLINE static void wal_truncate(struct wal *w) {
    wal_write(w);
    if (ftruncate(w->fd, 0) || lseek(w->fd, 0, SEEK_SET) < 0) { perror("wal truncate"); exit(2); }
    w->truncations++;
}

NOINLINE static void wal_close(struct wal *w) {
    wal_write(w);
    close(w->fd);
    unlink(w->path);
    free(w->buf);
}

/* ------------------------------------------------------ memtable (skip list) */

struct value { uint32_t len, crc; char data[]; };
struct entry { char key[KEY_MAX]; uint32_t klen; struct value *val; /* NULL: deleted */ };
struct node { struct entry e; int level; struct node *next[]; };

struct memtable { struct node *head; long count; int level; uint64_t rng; };

static int key_cmp(const char *a, size_t an, const char *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

NOINLINE static void memtable_init(struct memtable *m, uint64_t seed) {
    m->head = calloc(1, sizeof(struct node) + MAX_LEVEL * sizeof(struct node *));
    m->head->level = MAX_LEVEL;
    m->count = 0;
    m->level = 1;
    m->rng = seed | 1;
}

NOINLINE static int random_level(struct memtable *m) {
    int level = 1;
    while (level < MAX_LEVEL) {
        m->rng ^= m->rng << 13; m->rng ^= m->rng >> 7; m->rng ^= m->rng << 17;
        if (m->rng & 3) break; /* p = 1/4 */
        level++;
    }
    return level;
}

/* The last node before `key` on each level; returns the node holding `key`, if any. */
NOINLINE static struct node *memtable_seek(struct memtable *m, const char *key, size_t n, struct node **update) {
    struct node *x = m->head;
    for (int i = m->level - 1; i >= 0; i--) {
        while (x->next[i] && key_cmp(x->next[i]->e.key, x->next[i]->e.klen, key, n) < 0) x = x->next[i];
        if (update) update[i] = x;
    }
    x = x->next[0];
    return x && key_cmp(x->e.key, x->e.klen, key, n) == 0 ? x : NULL;
}

NOINLINE static void memtable_put(struct memtable *m, const char *key, size_t n, struct value *v) {
    struct node *update[MAX_LEVEL];
    struct node *x = memtable_seek(m, key, n, update);
    if (x) { free(x->e.val); x->e.val = v; return; }
    int level = random_level(m);
    for (; m->level < level; m->level++) update[m->level] = m->head;
    x = calloc(1, sizeof(struct node) + level * sizeof(struct node *));
    memcpy(x->e.key, key, n);
    x->e.klen = (uint32_t)n;
    x->e.val = v;
    x->level = level;
    for (int i = 0; i < level; i++) { x->next[i] = update[i]->next[i]; update[i]->next[i] = x; }
    m->count++;
}

/* ------------------------------------------- sorted runs and compaction */

struct run { long n; struct entry *e; uint64_t *bloom; uint64_t bloom_bits; };

struct store {
    struct config cfg;
    struct wal wal;
    struct memtable mem;
    struct run *runs[64]; /* newest last */
    int nruns;
    long flushes, compactions;
};

static void bloom_add(struct run *r, const char *key, size_t n) {
    uint64_t h = hash_key(key, n);
    for (int i = 0; i < 3; i++, h = h >> 21 | h << 43) r->bloom[(h % r->bloom_bits) / 64] |= 1ull << (h % 64);
}

static int bloom_may_have(const struct run *r, const char *key, size_t n) {
    uint64_t h = hash_key(key, n);
    for (int i = 0; i < 3; i++, h = h >> 21 | h << 43)
        if (!(r->bloom[(h % r->bloom_bits) / 64] & 1ull << (h % 64))) return 0;
    return 1;
}

NOINLINE static struct run *run_new(long capacity) {
    struct run *r = calloc(1, sizeof *r);
    r->e = malloc((capacity ? capacity : 1) * sizeof *r->e);
    r->bloom_bits = (uint64_t)(capacity * 10 / 64 + 1) * 64;
    r->bloom = calloc(r->bloom_bits / 64, 8);
    return r;
}

/* Frees the run; with `values`, its values too (else they moved elsewhere). */
NOINLINE static void run_free(struct run *r, int values) {
    for (long i = 0; values && i < r->n; i++) free(r->e[i].val);
    free(r->e); free(r->bloom); free(r);
}

/* 1: found (value or deletion in *out), 0: not in this run. */
NOINLINE static int run_lookup(const struct run *r, const char *key, size_t n, struct value **out) {
    if (!bloom_may_have(r, key, n)) return 0;
    long lo = 0, hi = r->n - 1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        int c = key_cmp(r->e[mid].key, r->e[mid].klen, key, n);
        if (c == 0) { *out = r->e[mid].val; return 1; }
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return 0;
}

/* The memtable becomes the newest run (the skip list is already sorted). */
NOINLINE static void flush_memtable(struct store *s) {
    struct run *r = run_new(s->mem.count);
    for (struct node *x = s->mem.head->next[0], *next; x; x = next) {
        next = x->next[0];
        r->e[r->n++] = x->e;
        bloom_add(r, x->e.key, x->e.klen);
        free(x);
    }
    memset(s->mem.head->next, 0, MAX_LEVEL * sizeof(struct node *));
    s->mem.count = 0;
    s->mem.level = 1;
    s->runs[s->nruns++] = r;
    s->flushes++;
    wal_truncate(&s->wal);
}

/* Merges two runs; entries of `newer` win; deletions are dropped when the result is the oldest run. */
NOINLINE static struct run *merge_runs(struct run *older, struct run *newer, int oldest) {
    struct run *r = run_new(older->n + newer->n);
    long i = 0, j = 0;
    while (i < older->n || j < newer->n) {
        int c = i == older->n ? 1 : j == newer->n ? -1
              : key_cmp(older->e[i].key, older->e[i].klen, newer->e[j].key, newer->e[j].klen);
        struct entry e;
        if (c < 0) e = older->e[i++];
        else {
            if (c == 0) free(older->e[i++].val); /* overwritten */
            e = newer->e[j++];
        }
        if (!e.val && oldest) continue; /* nothing older left to delete */
        r->e[r->n++] = e;
        bloom_add(r, e.key, e.klen);
    }
    run_free(older, 0);
    run_free(newer, 0);
    return r;
}

NOINLINE static void maybe_compact(struct store *s) {
    while (s->nruns > s->cfg.max_runs) {
        int k = s->nruns - 2;
        s->runs[k] = merge_runs(s->runs[k], s->runs[k + 1], k == 0);
        s->nruns--;
        s->compactions++;
    }
}

/* ------------------------------------------------------ requests */

enum op { OP_GET, OP_SET, OP_DEL, OP_INFO, OP_CHECKPOINT, OP_BAD };
struct request { enum op op; const char *key; size_t klen; const char *val; size_t vlen; };
struct stats { long gets, hits, sets, dels, admin, bad; uint32_t checksum; };

/* `GET key\n`, `DEL key\n`, `SET key len\n<len bytes>\n`, `INFO\n`, `CHECKPOINT\n`. */
NOINLINE static const char *parse_request(const char *p, const char *end, struct request *r) {
    const char *eol = memchr(p, '\n', end - p);
    if (!eol) { r->op = OP_BAD; return end; }
    memset(r, 0, sizeof *r);
    if (!memcmp(p, "GET ", 4)) r->op = OP_GET;
    else if (!memcmp(p, "SET ", 4)) r->op = OP_SET;
    else if (!memcmp(p, "DEL ", 4)) r->op = OP_DEL;
    else { r->op = !memcmp(p, "INFO", 4) ? OP_INFO : !memcmp(p, "CHECKPOINT", 10) ? OP_CHECKPOINT : OP_BAD; return eol + 1; }
    r->key = p + 4;
    const char *sp = memchr(r->key, ' ', eol - r->key);
    r->klen = (size_t)((sp ? sp : eol) - r->key);
    if (r->klen == 0 || r->klen > KEY_MAX) { r->op = OP_BAD; return eol + 1; }
    if (r->op != OP_SET) return eol + 1;
    r->vlen = sp ? strtoul(sp + 1, NULL, 10) : 0;
    r->val = eol + 1;
    if (r->val + r->vlen + 1 > end) { r->op = OP_BAD; return end; }
    return r->val + r->vlen + 1;
}

NOINLINE static struct value *store_get(struct store *s, const char *key, size_t n) {
    struct node *x = memtable_seek(&s->mem, key, n, NULL);
    if (x) return x->e.val;
    struct value *v;
    for (int i = s->nruns - 1; i >= 0; i--)
        if (run_lookup(s->runs[i], key, n, &v)) return v;
    return NULL;
}

NOINLINE static void cmd_get(struct store *s, const struct request *r, struct stats *st) {
    st->gets++;
    struct value *v = store_get(s, r->key, r->klen);
    if (!v) return;
    if (crc32_update(0, v->data, v->len) != v->crc) { fprintf(stderr, "kvstore: corrupt value\n"); exit(3); }
    st->hits++;
    st->checksum = st->checksum * 31 + v->crc;
}

NOINLINE static void cmd_set(struct store *s, const struct request *r, struct stats *st) {
    struct value *v = malloc(sizeof *v + r->vlen);
    v->len = (uint32_t)r->vlen;
    memcpy(v->data, r->val, r->vlen);
    v->crc = crc32_update(0, v->data, v->len);
    wal_append(&s->wal, 'S', r->key, r->klen, r->val, r->vlen);
    memtable_put(&s->mem, r->key, r->klen, v);
    st->sets++;
}

/* A delete of a key that holds nothing writes nothing; otherwise the old
   value is verified (as a get does) before its tombstone is logged. */
NOINLINE static void cmd_del(struct store *s, const struct request *r, struct stats *st) {
    struct value *old = store_get(s, r->key, r->klen);
    if (!old) return;
    if (crc32_update(0, old->data, old->len) != old->crc) { fprintf(stderr, "kvstore: corrupt value\n"); exit(3); }
    wal_append(&s->wal, 'D', r->key, r->klen, NULL, 0);
    memtable_put(&s->mem, r->key, r->klen, NULL);
    st->dels++;
}

NOINLINE static void admin_info(struct store *s, struct stats *st) {
    long entries = s->mem.count;
    for (int i = 0; i < s->nruns; i++) entries += s->runs[i]->n;
    st->checksum = st->checksum * 31 + (uint32_t)(entries + s->nruns);
    st->admin++;
}

NOINLINE static void admin_checkpoint(struct store *s, struct stats *st) {
    if (s->mem.count) flush_memtable(s);
    maybe_compact(s);
    st->admin++;
}

NOINLINE static void serve_batch(struct store *s, const char *p, const char *end, struct stats *st) {
    struct request r;
    while (p < end) {
        p = parse_request(p, end, &r);
        switch (r.op) {
        case OP_GET: cmd_get(s, &r, st); break;
        case OP_SET: cmd_set(s, &r, st); break;
        case OP_DEL: cmd_del(s, &r, st); break;
        case OP_INFO: admin_info(s, st); break;
        case OP_CHECKPOINT: admin_checkpoint(s, st); break;
        default: st->bad++;
        }
        if (s->mem.count >= s->cfg.memtable_limit) { flush_memtable(s); maybe_compact(s); }
    }
}

/* ------------------------------------------------------ load generator */

struct loadgen { uint64_t rng; long sent, keys; long value_size; };

static uint64_t next_random(struct loadgen *g) {
    g->rng ^= g->rng << 13; g->rng ^= g->rng >> 7; g->rng ^= g->rng << 17;
    return g->rng;
}

/* 80 % of the requests go to 20 % of the keys. */
static long pick_key(struct loadgen *g) {
    uint64_t x = next_random(g);
    long hot = g->keys / 5;
    return x % 10 < 8 ? (long)(x >> 8) % hot : hot + (long)(x >> 8) % (g->keys - hot);
}

NOINLINE static void fill_value(char *dst, long n, uint64_t seed) {
    for (long i = 0; i < n; i++) { seed = seed * 6364136223846793005ull + 1442695040888963407ull; dst[i] = 'a' + (seed >> 59); }
}

/* Formats the next batch of requests; `load` sets every key in order. */
NOINLINE static char *gen_batch(struct loadgen *g, char *buf, long count, int load) {
    char *p = buf;
    for (long i = 0; i < count; i++, g->sent++) {
        if (!load && g->sent % 100000 == 99999) { p += sprintf(p, "CHECKPOINT\n"); continue; }
        if (!load && g->sent % 20000 == 19999) { p += sprintf(p, "INFO\n"); continue; }
        long key = load ? g->sent : pick_key(g);
        uint64_t dice = load ? 70 : next_random(g) % 100;
        if (dice < 70) {
            p += sprintf(p, "GET user%08ld\n", key);
        } else if (dice < 95) {
            p += sprintf(p, "SET user%08ld %ld\n", key, g->value_size);
            fill_value(p, g->value_size, (uint64_t)key * 2654435761u + g->sent);
            p += g->value_size;
            *p++ = '\n';
        } else {
            p += sprintf(p, "DEL user%08ld\n", key);
        }
    }
    return p;
}

/* ------------------------------------------------------------- main */

NOINLINE static void store_open(struct store *s) {
    crc_init();
    memtable_init(&s->mem, s->cfg.seed);
    wal_open(&s->wal, s->cfg.wal_dir);
}

NOINLINE static void store_close(struct store *s) {
    wal_close(&s->wal);
    for (int i = 0; i < s->nruns; i++) run_free(s->runs[i], 1);
    for (struct node *x = s->mem.head->next[0], *next; x; x = next) { next = x->next[0]; free(x->e.val); free(x); }
    free(s->mem.head);
}

NOINLINE static void print_report(const struct store *s, const struct stats *st, long requests) {
    long entries = s->mem.count;
    for (int i = 0; i < s->nruns; i++) entries += s->runs[i]->n;
    printf("requests %ld: gets %ld (hits %ld), sets %ld, dels %ld, admin %ld, bad %ld\n",
           requests, st->gets, st->hits, st->sets, st->dels, st->admin, st->bad);
    printf("store: %ld entries in the memtable and %d runs, %ld flushes, %ld compactions\n",
           entries, s->nruns, s->flushes, s->compactions);
    printf("wal: %ld records, %ld writes, %ld truncations\n", s->wal.records, s->wal.writes, s->wal.truncations);
    printf("checksum %08x\n", st->checksum);
}

int main(int argc, char **argv) {
    static struct store s;
    load_config(&s.cfg, default_config);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--config")) load_config(&s.cfg, read_file(argv[i + 1]));
        else if (!strcmp(argv[i], "--requests")) s.cfg.requests = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--keys")) s.cfg.keys = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) s.cfg.seed = strtoul(argv[i + 1], NULL, 10);
        else { fprintf(stderr, "usage: kvstore [--requests N] [--keys N] [--config FILE] [--seed N]\n"); return 2; }
    }
    if (s.cfg.keys < 10 || s.cfg.batch < 1 || s.cfg.value_size < 1 || s.cfg.memtable_limit < 1 || s.cfg.max_runs < 1 || s.cfg.max_runs > 60) {
        fprintf(stderr, "kvstore: bad configuration\n");
        return 2;
    }
    store_open(&s);
    struct loadgen g = { .rng = s.cfg.seed * 2654435761u | 1, .keys = s.cfg.keys, .value_size = s.cfg.value_size };
    struct stats st = { 0 };
    char *buf = malloc((size_t)s.cfg.batch * (s.cfg.value_size + 64));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (g.sent < s.cfg.keys) { /* load phase: every key once */
        long n = s.cfg.keys - g.sent < s.cfg.batch ? s.cfg.keys - g.sent : s.cfg.batch;
        char *end = gen_batch(&g, buf, n, 1);
        serve_batch(&s, buf, end, &st);
    }
    for (g.sent = 0; g.sent < s.cfg.requests;) { /* run phase */
        long n = s.cfg.requests - g.sent < s.cfg.batch ? s.cfg.requests - g.sent : s.cfg.batch;
        char *end = gen_batch(&g, buf, n, 0);
        serve_batch(&s, buf, end, &st);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_report(&s, &st, s.cfg.keys + s.cfg.requests);
    fprintf(stderr, "throughput: %.0f requests/s (%.2f s)\n", (s.cfg.keys + s.cfg.requests) / secs, secs);
    free(buf);
    store_close(&s);
    return 0;
}
