/* Direct and mutual recursion 20,000 deep. */
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))

NOIPA long direct(long n) { return n == 0 ? 0 : 1 + direct(n - 1); }
NOIPA long odd(long n);
NOIPA long even(long n) { return n == 0 ? 1 : odd(n - 1); }
NOIPA long odd(long n) { return n == 0 ? 0 : even(n - 1); }

int main(int argc, char **argv) {
    long depth = argc > 1 ? atol(argv[1]) : 20000;
    printf("direct: %ld\n", direct(depth));
    printf("even: %ld\n", even(depth));
    return 0;
}
