/* Threads, one after another, each calling down a path of probed
   functions of its own (body → top → mid<k> → leaf), then the main thread
   down the first one: with a small contexts cap, live and merged calling-
   context trees must fold while counts and edges stay exact.
   Usage: deep THREADS CALLS (THREADS at most 8) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))
volatile long sink;
static long calls = 1000;

NOIPA long leaf(long x) { sink = x; return x + 1; }
#define MID(n) NOIPA long mid##n(long x) { return leaf(x) + leaf(x + n); }
MID(0) MID(1) MID(2) MID(3) MID(4) MID(5) MID(6) MID(7)
static long (*const mids[])(long) = {mid0, mid1, mid2, mid3, mid4, mid5, mid6, mid7};
NOIPA long top(long k, long x) { return mids[k](x); }

static void *body(void *arg) {
    long k = (long)arg, s = 0;
    for (long i = 0; i < calls; i++) s += top(k, i);
    return (void *)s;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2) calls = atol(argv[2]);
    if (n > 8) n = 8;
    long total = 0;
    for (long k = 0; k < n; k++) {
        pthread_t t;
        void *r;
        pthread_create(&t, NULL, body, (void *)k);
        pthread_join(t, &r);
        total += (long)r;
    }
    total += (long)body((void *)0);
    printf("total %ld\n", total);
    return 0;
}
