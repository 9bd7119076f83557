/* Tail calls: at -O2 tail_a ends in `jmp tail_b`, tail_b in `jmp tail_c`. */
#include <stdio.h>

#define NOINLINE __attribute__((noinline, noclone))

volatile long sink;
NOINLINE long tail_c(long x) { sink += x; return x * 5; }
NOINLINE long tail_b(long x) { sink += 1; return tail_c(x + 1); }
NOINLINE long tail_a(long x) { sink += 2; return tail_b(x + 1); }

int main(void) {
    long s = 0;
    for (long i = 0; i < 500; i++) s += tail_a(i);
    printf("tail: %ld\n", s);
    return 0;
}
