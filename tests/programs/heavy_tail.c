/* One function whose calls are mostly a few ns and one in eight ~20 µs:
   most calls are under the score card's thresholds, yet it is nearly all
   of the program's time. Runs for about ROUNDS × 2.5 µs. With `helper`, a
   second thread starts 1.2 s in (past the removal window) and makes 400
   calls of it, one every millisecond (the same mix: its own time is worth
   measuring, its share of the run small).
   Usage: heavy_tail ROUNDS [helper] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))
volatile unsigned long sink;

NOIPA unsigned long lookup(unsigned long i) {
    if (i % 8 != 0) return i * 3;
    unsigned long h = i;
    for (int k = 0; k < 20000; k++) h = h * 6364136223846793005UL + 1442695040888963407UL;
    return h;
}

static void *helper(void *arg) {
    (void)arg;
    usleep(1200000);
    unsigned long acc = 0;
    for (unsigned long i = 0; i < 400; i++) {
        acc ^= lookup(i);
        usleep(1000);
    }
    return (void *)acc;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 800000;
    int with_helper = argc > 2 && strcmp(argv[2], "helper") == 0;
    pthread_t t;
    if (with_helper) pthread_create(&t, NULL, helper, NULL);
    unsigned long acc = 0;
    for (long i = 0; i < rounds; i++) acc ^= lookup((unsigned long)i);
    if (with_helper) {
        void *r;
        pthread_join(t, &r);
        acc ^= (unsigned long)r;
    }
    sink = acc;
    printf("rounds %ld%s\n", rounds, with_helper ? " and a helper's 400" : "");
    return 0;
}
