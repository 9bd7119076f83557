/* Prints its arguments and a few computed lines, then exits with a chosen code. */
#include <stdio.h>
#include <stdlib.h>

static int square(int x) { return x * x; }

int sum_of_squares(int n) {
    int total = 0;
    for (int i = 1; i <= n; i++) total += square(i);
    return total;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    printf("sum of squares to 10: %d\n", sum_of_squares(10));
    return getenv("EXIT_CODE") ? atoi(getenv("EXIT_CODE")) : 0;
}
