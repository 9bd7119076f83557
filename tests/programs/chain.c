/* Callers are judged after their callees (score_card::held). `relay` has
   150 ns of its own and calls `step`, which takes 400 ns three calls in four
   and 800 ns in the fourth. Under a score card of 0.6 µs inclusive and
   0.3 µs inherent (margins for the clock reads, 35 ns each on one machine
   here, which made a 400 ns spin take ~490), `step` loses a quarter of a
   point a call on average
   (out after ~800 calls); `relay`, judged while `step` is probed, would
   lose a point a call (out after ~200, before `step`), but once `step` is
   removed its time is relay's own and relay clears both thresholds. So
   relay must end hot, and step disabled.
   Usage: chain [CALLS] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "spin.h"

static long calls_of_step;
NOIPA void step(void) { spin(++calls_of_step % 4 == 0 ? 800 : 400); }

NOIPA void relay(void) {
    spin(150);
    step();
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 20000;
    for (long i = 0; i < calls; i++) relay();
    printf("relayed %ld\n", calls);
    return 0;
}
