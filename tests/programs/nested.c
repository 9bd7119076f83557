/* Nested functions of 1–2 µs, each with several probed callees, so the
   probes' own cost is a sizeable part of every call and reported times
   are only right if it is compensated for:
     outer: 800 ns of its own + mid + 2 × tick
     mid:   1200 ns of its own + 6 × tick
   Spins are timed, not counted in instructions, and each one reports how
   long it really spun (a clock read's cost is added: it is spent before
   the first timestamp and after the last); tick's cost is measured on an
   unprobed twin. Stderr has the truth, and the time the loop spent off
   the CPU. Usage: nested CALLS (run with HOTPROBE_EXCLUDE=tick_twin) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOIPA __attribute__((noipa))

static inline __attribute__((always_inline)) long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Spins `ns`, adding the time it took to `spun`, and to `preempted` the
   time beyond what was asked when it took 20 µs more (the thread was
   preempted in it: time the agent also sees, so a test takes it out of
   both). */
static inline __attribute__((always_inline)) void spin(long ns, long *spun, long *preempted) {
    long start = now_ns(), end = start + ns, t;
    do {
        t = now_ns();
    } while (t < end);
    *spun += t - start;
    if (t - start > ns + 20000) *preempted += t - start - ns;
}

volatile long sink;
static long spun_outer, spun_mid, preempted_outer, preempted_mid;
NOIPA long tick(long x) { sink = x; return x * 3 + 1; }
NOIPA long tick_twin(long x) { sink = x; return x * 3 + 1; }
NOIPA long mid(long x) {
    spin(1200, &spun_mid, &preempted_mid);
    long s = 0;
    for (int i = 0; i < 6; i++) s += tick(x + i);
    return s;
}
NOIPA long outer(long x) {
    spin(800, &spun_outer, &preempted_outer);
    return mid(x) + tick(x) + tick(x + 1);
}

static long thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 20000;
    /* What a clock read costs, and a tick call (loop included, as in mid):
       the least disturbed of 20 batches. */
    double read_ns = 1e9, tick_ns = 1e9;
    long s = 0;
    for (int b = 0; b < 20; b++) {
        long t0 = now_ns();
        for (int i = 0; i < 1000; i++) sink = now_ns();
        long t1 = now_ns();
        for (int i = 0; i < 10000; i++) s += tick_twin(i);
        long t2 = now_ns();
        if ((t1 - t0) / 1000.0 < read_ns) read_ns = (t1 - t0) / 1000.0;
        if ((t2 - t1) / 10000.0 < tick_ns) tick_ns = (t2 - t1) / 10000.0;
    }
    long wall0 = now_ns(), cpu0 = thread_cpu_ns();
    for (long i = 0; i < calls; i++) s += outer(i);
    long off = (now_ns() - wall0) - (thread_cpu_ns() - cpu0);
    fprintf(stderr, "spun outer %ld mid %ld read %.2f tick %.2f\n", spun_outer, spun_mid, read_ns, tick_ns);
    fprintf(stderr, "preempted outer %ld mid %ld\n", preempted_outer, preempted_mid);
    fprintf(stderr, "nested off-cpu %ld\n", off > 0 ? off : 0);
    printf("done %ld\n", s & 1);
    return 0;
}
