/* Known call counts: leaf() N*3 times, middle() N times, top() once per round.
   noipa keeps every call a real call at -O2 (no inlining, cloning or IPA). */
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))

volatile long sink;

NOIPA long leaf(long x) { sink += x; return x * 2 + 1; }
NOIPA long middle(long x) { return leaf(x) + leaf(x + 1) + leaf(x + 2); }
NOIPA long top(int n) {
    long total = 0;
    for (int i = 0; i < n; i++) total += middle(i);
    return total;
}
NOIPA double with_doubles(double a, double b, double c, double d, double e, double f, double g, double h) {
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}
NOIPA long many_args(long a, long b, long c, long d, long e, long f, long g, long h) {
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}
NOIPA long double ld_value(long double x) { return x * 3.0L; }
struct pair { long a, b; };
NOIPA struct pair two_values(long x) { struct pair p = { x, -x }; return p; }
NOIPA int varargs_sum(int n, ...) {
    __builtin_va_list ap;
    __builtin_va_start(ap, n);
    int s = 0;
    for (int i = 0; i < n; i++) s += __builtin_va_arg(ap, int);
    __builtin_va_end(ap);
    return s;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    printf("top: %ld\n", top(n));
    printf("doubles: %.1f\n", with_doubles(1, 2, 3, 4, 5, 6, 7, 8));
    printf("args: %ld\n", many_args(1, 2, 3, 4, 5, 6, 7, 8));
    printf("long double: %.1Lf\n", ld_value(2.5L));
    struct pair p = two_values(7);
    printf("pair: %ld %ld\n", p.a, p.b);
    printf("varargs: %d\n", varargs_sum(4, 1, 2, 3, 4));
    return 0;
}
