/* A caller judged while its callee is kept for the removal window.
   `near` spins 100 ns (some 130 ns a call with the clock reads): over the
   inherent threshold (110 ns in the test's card), under the inclusive one
   (180 ns), so its score falls while
   every call reaches a threshold and it is kept, then removed. `outer`
   first spins 200 ns of its own (it turns warm), then from PHASE_MS on
   spins 50 ns (some 80) and calls `near`: while near is probed outer keeps
   80 ns of its own (under 110 ns) and its score falls; once near is gone
   its 210 ns are outer's own, and it is hot. Scored while near is kept, outer goes;
   held until near's verdict, it ends hot.
   Usage: kept_callee [TOTAL_MS [PHASE_MS]] */
#include <stdio.h>
#include <stdlib.h>

#include "spin.h"

NOIPA void near(void) { spin(100); }
static int phase2;
NOIPA void outer(void) {
    if (!phase2) {
        spin(200);
        return;
    }
    spin(50);
    near();
}

int main(int argc, char **argv) {
    long total_ms = argc > 1 ? atol(argv[1]) : 1000;
    long phase_ms = argc > 2 ? atol(argv[2]) : 100;
    long start = now_ns(), ms, calls = 0;
    while ((ms = (now_ns() - start) / 1000000) < total_ms) {
        phase2 = ms >= phase_ms;
        outer();
        calls++;
    }
    printf("%s\n", calls > 0 ? "done" : "no calls");
    return 0;
}
