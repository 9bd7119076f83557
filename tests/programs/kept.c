/* More warm functions than the score card keeps for min_removal_ms at
   once: 40, each 100 ns a call (over the inherent threshold, under the
   inclusive one, so each score falls while every call reaches a
   threshold). The first KEPT_MAX (32) to ask are kept; the rest go after
   min_judging_ms.
   Usage: kept [TOTAL_MS [SWITCH_MS [idle]]]: with SWITCH_MS, near1..near32
   take 100 ns a call until then and return at once after (their calls no
   longer come near a threshold, so they go and give their slots back), or
   with `idle` are not called at all after (they stay kept until their
   removal window ends); near33..near40 are called only from then on.
   Built twice, with -DKEPT_PLUGIN (-shared: near1..near32 and kept_first,
   which calls them) and with -DKEPT_HOST (near33..near40 and main), it is
   `kept_host TOTAL_MS SWITCH_MS LIBRARY`: idle mode, with the library that
   holds near1..near32 dlopened at start and dlclosed at SWITCH_MS. */
#include <stdio.h>
#include <stdlib.h>

#include "spin.h"

#define C(n) near##n();
#define CALL_TEN(n) C(n##0) C(n##1) C(n##2) C(n##3) C(n##4) C(n##5) C(n##6) C(n##7) C(n##8) C(n##9)
#define CALL_FIRST C(1) C(2) C(3) C(4) C(5) C(6) C(7) C(8) C(9) CALL_TEN(1) CALL_TEN(2) C(30) C(31) C(32)
#define CALL_LATE C(33) C(34) C(35) C(36) C(37) C(38) C(39) C(40)

#ifndef KEPT_HOST
static long near_ns = 100;
#define F(n) NOIPA void near##n(void) { if (near_ns) spin(near_ns); }
#define TEN(n) F(n##0) F(n##1) F(n##2) F(n##3) F(n##4) F(n##5) F(n##6) F(n##7) F(n##8) F(n##9)
F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) TEN(1) TEN(2) F(30) F(31) F(32)
#endif

#ifdef KEPT_PLUGIN
NOIPA void kept_first(void) { CALL_FIRST }
#else
#define LATE(n) NOIPA void near##n(void) { spin(100); }
LATE(33) LATE(34) LATE(35) LATE(36) LATE(37) LATE(38) LATE(39) LATE(40)

#ifdef KEPT_HOST
#include <dlfcn.h>
#endif

int main(int argc, char **argv) {
    long total_ms = argc > 1 ? atol(argv[1]) : 900;
    long switch_ms = argc > 2 ? atol(argv[2]) : 0;
#ifdef KEPT_HOST
    if (argc < 4 || switch_ms <= 0) return 2;
    void *lib = dlopen(argv[3], RTLD_NOW);
    void (*first)(void) = lib ? (void (*)(void))dlsym(lib, "kept_first") : NULL;
    if (!first) {
        printf("dlopen failed: %s\n", dlerror());
        return 1;
    }
    int idle = 1;
#define CALL_FIRST_NOW first();
#else
    int idle = argc > 3 && argv[3][0] == 'i';
#define CALL_FIRST_NOW CALL_FIRST
#endif
    long start = now_ns(), rounds = 0, ms;
    while ((ms = (now_ns() - start) / 1000000) < total_ms) {
        int late = switch_ms > 0 && ms >= switch_ms;
#ifdef KEPT_HOST
        if (late && lib) {
            dlclose(lib);
            lib = NULL;
        }
#else
        if (late) near_ns = 0;
#endif
        if (!(late && idle)) {
            CALL_FIRST_NOW
        }
        if (!switch_ms || late) {
            CALL_LATE
        }
        rounds++;
    }
    printf("%s\n", rounds > 0 ? "done" : "no calls");
    return 0;
}
#endif
