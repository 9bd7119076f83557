/* Does a reference kernel track this machine's slow stretches? Every
   ~5 ms, for SECONDS: times a dependent multiply chain (`compute`), a
   pointer chase through 4 MB (`chase`), a copy-and-compare of short
   buffers (`copy`), and 2,000 calls of `work` (8 hashed reads from a
   4 MB table plus a 96-byte copy and compare, like a server's lookup), and
   prints one line per window: seconds, then the median TSC ticks of each.
   If one kernel's ticks rose and fell with work's, the agent could scale
   its thresholds by it (bench/README or BENCHMARKS.md, "removal waits").
   Usage: machine_speed SECONDS > out; run pinned: taskset -c 0 … */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#define TABLE (1u << 19) /* 4 MB of u64 */
#define CHASE (1u << 20) /* 4 MB of u32 */
static uint64_t table[TABLE];
static uint32_t chase[CHASE];
static char src[256], dst[256];

__attribute__((noinline)) static uint64_t work(uint64_t k) {
    uint64_t h = k * 0x9E3779B97F4A7C15ull, s = 0;
    for (int i = 0; i < 8; i++) {
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9ull;
        s += table[h & (TABLE - 1)];
    }
    memcpy(dst, src + (k & 63), 96);
    return s + memcmp(src, dst, 64);
}
__attribute__((noinline)) static uint64_t compute(uint64_t n) {
    uint64_t x = 1, y = 3;
    for (uint64_t i = 0; i < n; i++) { x = x * 6364136223846793005ull + y; y ^= x >> 17; }
    return x + y;
}
__attribute__((noinline)) static uint64_t chase_steps(uint64_t from) {
    uint32_t p = (uint32_t)from & (CHASE - 1);
    for (int i = 0; i < 256; i++) p = chase[p];
    return p;
}
__attribute__((noinline)) static uint64_t copy(uint64_t k) {
    uint64_t s = 0;
    for (int i = 0; i < 8; i++) { memcpy(dst, src + ((k + i) & 63), 96); s += memcmp(src, dst, 64); }
    return s;
}
static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
static uint64_t sink;
static uint64_t median_of_5(uint64_t (*f)(uint64_t), uint64_t arg) {
    uint64_t t[5];
    for (int j = 0; j < 5; j++) { uint64_t a = __rdtsc(); sink += f(arg + j + sink); t[j] = __rdtsc() - a; }
    qsort(t, 5, sizeof t[0], by_value);
    return t[2];
}
static uint64_t compute_2000(uint64_t k) { (void)k; return compute(2000); }

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 60;
    for (uint32_t i = 0; i < TABLE; i++) table[i] = i * 7u;
    for (uint32_t i = 0; i < CHASE; i++) chase[i] = i;
    srand(1);
    for (uint32_t i = CHASE - 1; i > 0; i--) { uint32_t j = (uint32_t)rand() % (i + 1), t = chase[i]; chase[i] = chase[j]; chase[j] = t; }
    memset(src, 'a', sizeof src);
    static uint64_t calls[2000];
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    printf("# seconds compute chase copy work\n");
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
        if (el > seconds) break;
        uint64_t c = median_of_5(compute_2000, 0), p = median_of_5(chase_steps, 77), m = median_of_5(copy, 7);
        for (int i = 0; i < 2000; i++) { uint64_t a = __rdtsc(); sink += work((uint64_t)i * 31 + sink); calls[i] = __rdtsc() - a; }
        qsort(calls, 2000, sizeof calls[0], by_value);
        printf("%.3f %lu %lu %lu %lu\n", el, c, p, m, calls[1000]);
        struct timespec pause = {0, 5000000};
        nanosleep(&pause, 0);
    }
    fprintf(stderr, "%lu\n", sink);
    return 0;
}
