/* Functions that spin for known durations, nested, and a tiny one of a few
   nanoseconds: the truth the agent's times are checked against.
   outer: 100 µs of its own + 2 × inner (50 µs each) = 200 µs inclusive. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "spin.h"

volatile long sink;
/* The program's own account of the time spent, reported on stderr: the
   truth the agent is checked against (preemption makes a spin run long). */
static long inner_total, outer_total;
NOIPA void inner(void) { spin(50000); }
NOIPA void outer(void) {
    spin(100000);
    long t0 = now_ns();
    inner();
    long t1 = now_ns();
    inner();
    inner_total += (t1 - t0) + (now_ns() - t1);
}
NOIPA long tiny(long x) {
    sink = x;
    return x * 3 + 1;
}

static long thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Wall time this thread spent off the CPU since (wall0, cpu0): what
   preemption added to the calls measured in between. */
static long off_cpu_since(long wall0, long cpu0) {
    long off = (now_ns() - wall0) - (thread_cpu_ns() - cpu0);
    return off > 0 ? off : 0;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    long tiny_calls = argc > 2 ? atol(argv[2]) : 1000000;
    long wall0 = now_ns(), cpu0 = thread_cpu_ns();
    for (int i = 0; i < rounds; i++) {
        long t0 = now_ns();
        outer();
        outer_total += now_ns() - t0;
    }
    fprintf(stderr, "truth outer %ld inner %ld\n", outer_total, inner_total);
    fprintf(stderr, "outer off-cpu %ld\n", off_cpu_since(wall0, cpu0));
    long s = 0;
    wall0 = now_ns(), cpu0 = thread_cpu_ns();
    for (long i = 0; i < tiny_calls; i++) s += tiny(i);
    fprintf(stderr, "tiny off-cpu %ld\n", off_cpu_since(wall0, cpu0));
    printf("done %ld\n", s & 1);
    return 0;
}
