/* A verdict waits for min_judging_ms. For the first PHASE_MS both
   functions behave one way, then the other way round: `early_fast` is
   nearly free at first and then takes 400 ns a call; `early_slow` takes
   400 ns at first and is then nearly free. Judged from its first calls
   (min_judging_ms = 0), early_fast is taken out and early_slow is hot for
   good; judged over a window longer than PHASE_MS, the other way round.
   early_fast's first calls take 100 ns: under the inclusive threshold but
   near enough that they could be over it when the machine is slower (a
   call that never comes near a threshold is judged at once, as
   `cold_by_far`, a few ns a call all along, must be).
   Usage: phases [PHASE_MS] [TOTAL_MS] */
#include <stdio.h>
#include <stdlib.h>

#include "spin.h"

static volatile long sink;
NOIPA void cold_by_far(void) { sink++; }
NOIPA void early_fast(int later) {
    spin(later ? 400 : 100);
}
NOIPA void early_slow(int later) {
    if (later) sink++;
    else spin(400);
}

int main(int argc, char **argv) {
    long phase_ms = argc > 1 ? atol(argv[1]) : 60;
    long total_ms = argc > 2 ? atol(argv[2]) : 300;
    long start = now_ns(), calls = 0;
    for (;;) {
        long ms = (now_ns() - start) / 1000000;
        if (ms >= total_ms) break;
        int later = ms >= phase_ms;
        early_fast(later);
        early_slow(later);
        cold_by_far();
        calls++;
    }
    printf("%s\n", calls > 0 ? "done" : "no calls");
    return 0;
}
