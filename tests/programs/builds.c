/* One program in two builds, for `hotprobe diff` across builds. The base
   build has `retired`; `-DNEW_BUILD` makes `tunable` TUNABLE_REPS times
   slower, drops `retired` and adds `introduced`. `steady` is the same in
   both. Built into two directories under one file name, the builds' modules
   match by file name. */
#include <stdio.h>

#define NOIPA __attribute__((noipa))

#ifndef TUNABLE_REPS
#define TUNABLE_REPS 20
#endif

volatile unsigned long sink;

static unsigned long mix(unsigned long x, long rounds) {
    for (long i = 0; i < rounds; i++) x = x * 6364136223846793005ul + 1442695040888963407ul;
    return x;
}

NOIPA unsigned long steady(unsigned long x) { return mix(x, 2000); }

#ifdef NEW_BUILD
NOIPA unsigned long tunable(unsigned long x) { return mix(x, 2000L * TUNABLE_REPS); }
NOIPA unsigned long introduced(unsigned long x) { return mix(x, 500); }
#else
NOIPA unsigned long tunable(unsigned long x) { return mix(x, 2000); }
NOIPA unsigned long retired(unsigned long x) { return mix(x, 500); }
#endif

int main(void) {
    unsigned long acc = 0;
    for (int i = 0; i < 3000; i++) {
        acc ^= steady(i) + tunable(i);
#ifdef NEW_BUILD
        acc ^= introduced(i);
#else
        acc ^= retired(i);
#endif
    }
    sink = acc;
    printf("done\n");
    return 0;
}
