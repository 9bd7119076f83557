/* One function whose calls are mostly a few ns and one in eight ~20 µs:
   most calls are under the score card's thresholds, yet it is nearly all
   of the program's time. Runs for about ROUNDS × 2.5 µs.
   Usage: heavy_tail ROUNDS */
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))
volatile unsigned long sink;

NOIPA unsigned long lookup(unsigned long i) {
    if (i % 8 != 0) return i * 3;
    unsigned long h = i;
    for (int k = 0; k < 20000; k++) h = h * 6364136223846793005UL + 1442695040888963407UL;
    return h;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 800000;
    unsigned long acc = 0;
    for (long i = 0; i < rounds; i++) acc ^= lookup((unsigned long)i);
    sink = acc;
    printf("rounds %ld\n", rounds);
    return 0;
}
