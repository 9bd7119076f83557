/* Per-call cost when several probed ~3 ns functions are called in a
   random order (a fixed pseudo-random sequence, drawn before timing). A
   branch that every probe shares and whose target depends on the probe is
   mispredicted here, where call_cost.c (one function) hides it. Prints ns
   per call. Usage: multi_call CALLS FUNCTIONS (1-16). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOIPA __attribute__((noipa))

volatile unsigned long sink;

#define LEAF(n)                                             \
    NOIPA unsigned long leaf##n(unsigned long x) {          \
        unsigned long y = x * 2654435761u + n;              \
        sink = y;                                           \
        return y ^ (y >> 13);                               \
    }
LEAF(0) LEAF(1) LEAF(2) LEAF(3) LEAF(4) LEAF(5) LEAF(6) LEAF(7)
LEAF(8) LEAF(9) LEAF(10) LEAF(11) LEAF(12) LEAF(13) LEAF(14) LEAF(15)

#include "clock.h"

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 3000000;
    int k = argc > 2 ? atoi(argv[2]) : 16;
    if (k < 1 || k > 16) k = 16;
    unsigned char *seq = malloc(n);
    if (!seq) return 1;
    unsigned long r = 12345, acc = 0;
    for (long i = 0; i < n; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        seq[i] = (r >> 60) % k;
    }
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        switch (seq[i]) {
        case 0: acc += leaf0(i); break;
        case 1: acc += leaf1(i); break;
        case 2: acc += leaf2(i); break;
        case 3: acc += leaf3(i); break;
        case 4: acc += leaf4(i); break;
        case 5: acc += leaf5(i); break;
        case 6: acc += leaf6(i); break;
        case 7: acc += leaf7(i); break;
        case 8: acc += leaf8(i); break;
        case 9: acc += leaf9(i); break;
        case 10: acc += leaf10(i); break;
        case 11: acc += leaf11(i); break;
        case 12: acc += leaf12(i); break;
        case 13: acc += leaf13(i); break;
        case 14: acc += leaf14(i); break;
        default: acc += leaf15(i); break;
        }
    }
    double t1 = now_ns();
    printf("%.3f ns/call (acc %lu)\n", (t1 - t0) / n, acc & 1);
    free(seq);
    return 0;
}
