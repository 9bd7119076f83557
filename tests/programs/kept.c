/* More warm functions than the score card keeps for min_removal_ms: 40,
   each 100 ns a call (over the inherent threshold, under the inclusive
   one, so each score falls while every call reaches a threshold). The
   first KEPT_MAX (32) to ask are kept; the rest go after min_judging_ms.
   Usage: kept [TOTAL_MS] */
#include <stdio.h>
#include <stdlib.h>

#include "spin.h"

#define F(n) NOIPA void near##n(void) { spin(100); }
#define TEN(n) F(n##0) F(n##1) F(n##2) F(n##3) F(n##4) F(n##5) F(n##6) F(n##7) F(n##8) F(n##9)
TEN(1) TEN(2) TEN(3) TEN(4)
#define C(n) near##n();
#define CALL_TEN(n) C(n##0) C(n##1) C(n##2) C(n##3) C(n##4) C(n##5) C(n##6) C(n##7) C(n##8) C(n##9)

int main(int argc, char **argv) {
    long total_ms = argc > 1 ? atol(argv[1]) : 900;
    long start = now_ns(), rounds = 0;
    while ((now_ns() - start) / 1000000 < total_ms) {
        CALL_TEN(1) CALL_TEN(2) CALL_TEN(3) CALL_TEN(4)
        rounds++;
    }
    printf("%s\n", rounds > 0 ? "done" : "no calls");
    return 0;
}
