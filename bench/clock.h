/* Shared by the bench programs: CLOCK_MONOTONIC in ns, as a double. */
#ifndef HOTPROBE_BENCH_CLOCK_H
#define HOTPROBE_BENCH_CLOCK_H
#include <time.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}
#endif
