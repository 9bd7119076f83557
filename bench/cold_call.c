/* A small function called with cold caches: before each call the program
   writes a 64 MB buffer (pass a second argument to skip that: warm calls),
   and it times each call itself (lfence + rdtscp on both sides), printing
   the median and p90 in TSC ticks. Under the agent, compare the snapshot's
   p50 for `getter` with the bare run's own figure: what a probe measures
   of a cold call, and what a cold call costs the program with and without
   the probe (BENCHMARKS.md, "cold calls").
   gcc -O2 -g -o cold_call bench/cold_call.c
   ./cold_call 1000; LD_PRELOAD=target/release/libhotprobe.so
   HOTPROBE_ADAPTIVE=0 HOTPROBE_INCLUDE=getter ./cold_call 1000 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x86intrin.h>
struct obj { long len; char pad[56]; };
__attribute__((noinline)) long getter(struct obj *o) { long s = o->len; for (int k = 0; k < 4; k++) s = s * 31 + o->pad[k * 8]; return s; }
static int cmp(const void *a, const void *b) { unsigned long x=*(unsigned long*)a, y=*(unsigned long*)b; return x<y?-1:x>y; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    size_t big = 64u << 20;
    char *buf = malloc(big);
    struct obj *objs = calloc(1024, sizeof *objs);
    unsigned long *t = malloc(n * sizeof *t);
    long sum = 0;
    for (int i = 0; i < n; i++) {
        if (argc < 3) for (size_t j = 0; j < big; j += 64) buf[j] += 1;
        unsigned aux;
        _mm_lfence(); unsigned long a = __rdtscp(&aux); _mm_lfence();
        sum += getter(&objs[(i * 7) % 1024]);
        _mm_lfence(); unsigned long b = __rdtscp(&aux); _mm_lfence();
        t[i] = b - a;
    }
    qsort(t, n, sizeof *t, cmp);
    printf("self-timed ticks p50 %lu p90 %lu sum %ld\n", t[n/2], t[n*9/10], sum);
    return 0;
}
