/* Direct and mutual recursion 20,000 deep. */
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))

/* The volatile store after each call keeps them real recursions at -O2
   (no tail call, no accumulator loop). */
volatile long depth_sink;
NOIPA long direct(long n) {
    if (n == 0) return 0;
    long r = 1 + direct(n - 1);
    depth_sink = n;
    return r;
}
NOIPA long odd(long n);
NOIPA long even(long n) {
    if (n == 0) return 1;
    long r = odd(n - 1);
    depth_sink = n;
    return r;
}
NOIPA long odd(long n) {
    if (n == 0) return 0;
    long r = even(n - 1);
    depth_sink = n;
    return r;
}

int main(int argc, char **argv) {
    long depth = argc > 1 ? atol(argv[1]) : 20000;
    printf("direct: %ld\n", direct(depth));
    printf("even: %ld\n", even(depth));
    return 0;
}
