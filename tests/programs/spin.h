/* Shared by the test programs that spin for known durations. */
#ifndef HOTPROBE_TEST_SPIN_H
#define HOTPROBE_TEST_SPIN_H
#include <time.h>

#define NOIPA __attribute__((noipa))

static inline __attribute__((always_inline)) long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Inlined, so the time spent spinning is the caller's own. */
static inline __attribute__((always_inline)) void spin(long ns) {
    long end = now_ns() + ns;
    while (now_ns() < end) {
    }
}
#endif
