/* Two functions of known cost; `tunable` costs REPS times `steady`.
   Run with REPS 1 and 20 to get a diff that names `tunable`. */
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))

volatile unsigned long sink;

NOIPA unsigned long steady(unsigned long x) {
    for (int i = 0; i < 2000; i++) x = x * 6364136223846793005ul + 1442695040888963407ul;
    return x;
}

NOIPA unsigned long tunable(unsigned long x, long reps) {
    for (long i = 0; i < 2000 * reps; i++) x = x * 6364136223846793005ul + 1442695040888963407ul;
    return x;
}

int main(int argc, char **argv) {
    long reps = argc > 1 ? atol(argv[1]) : 1;
    unsigned long acc = 0;
    for (int i = 0; i < 3000; i++) acc ^= steady(i) + tunable(i, reps);
    sink = acc;
    printf("done\n");
    return 0;
}
