/* A dispatcher whose own time is what its probed callee leaves it: while
   `work` is probed, `dispatch` keeps a few ns of its own and the score card
   takes it out; once `work` leaves the probe set, work's 2 µs a call are
   dispatch's own, and refine brings it back (its second chance).
   Usage: dispatch [CALLS [FAST [EVERY]]]: the first FAST calls of `work`
   return at once, a warm-up in which the score card takes it out; past
   them only every EVERY-th call spins (the others return at once), so
   with EVERY 4 work averages 500 ns a call yet three calls in four are
   under both thresholds. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "spin.h"

volatile long sink;
static long fast_calls, spin_every = 1, calls_past_fast;
NOIPA void work(void) {
    if (fast_calls > 0) {
        fast_calls--;
        return;
    }
    if (calls_past_fast++ % spin_every == 0) spin(2000);
}
NOIPA void dispatch(long n) {
    sink = n;
    work();
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 20000;
    fast_calls = argc > 2 ? atol(argv[2]) : 0;
    spin_every = argc > 3 && atol(argv[3]) > 0 ? atol(argv[3]) : 1;
    for (long i = 0; i < calls; i++) dispatch(i);
    printf("done %ld\n", calls);
    return 0;
}
