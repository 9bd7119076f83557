/* Per-call cost of a ~3 ns function, timed inside the program (so start-up
   and exit costs of a tool are left out). Prints ns per call of `leaf`. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOIPA __attribute__((noipa))

volatile unsigned long sink;

NOIPA unsigned long leaf(unsigned long x) {
    unsigned long y = x * 2654435761u;
    sink = y;
    return y ^ (y >> 13);
}

#include "clock.h"

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    long warm = argc > 2 ? atol(argv[2]) : 200000;
    unsigned long acc = 0;
    for (long i = 0; i < warm; i++) acc += leaf(i);   /* adaptive: time to disable */
    long pause_ms = argc > 3 ? atol(argv[3]) : 50;
    struct timespec pause = { pause_ms / 1000, (pause_ms % 1000) * 1000 * 1000 };
    nanosleep(&pause, NULL);                           /* the agent thread removes probes */
    double t0 = now_ns();
    for (long i = 0; i < n; i++) acc += leaf(i);
    double t1 = now_ns();
    printf("%.3f ns/call (acc %lu)\n", (t1 - t0) / n, acc & 1);
    return 0;
}
