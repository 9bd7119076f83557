/* A caller is scored while its callee is judged when its calls clear the
   thresholds whatever the callee's verdict (score_card::verdict_free).
   `batch` spins 100 µs of its own a call and calls `near` 8 times; `near`
   takes 100 ns a call, over the inherent threshold and under an inclusive
   one of 0.3 µs, so its score falls while every call comes near a
   threshold, and the score card keeps it for the removal window (600 ms
   under the test's card), longer than the run (some 100 ms, 300 under
   load). `batch` is called 1,000 times, fewer than score_card::HELD_CAP:
   held for near's sake it would never be scored; scored, it ends hot.
   Usage: busy_caller [BATCHES] */
#include <stdio.h>
#include <stdlib.h>

#include "spin.h"

NOIPA void near(void) { spin(100); }

NOIPA void batch(void) {
    spin(100000);
    for (int i = 0; i < 8; i++) near();
}

int main(int argc, char **argv) {
    long batches = argc > 1 ? atol(argv[1]) : 1000;
    for (long i = 0; i < batches; i++) batch();
    printf("batches %ld\n", batches);
    return 0;
}
