/* Unwinding through tail calls between probed functions: at -O2 tail_a
   ends in `jmp tail_b` and tail_b in `jmp tail_c`, so the three frames
   share one return slot. tail_c throws (caught in main); walk_c, at the
   end of the same kind of chain, prints how many frames backtrace() sees.
   Output and exit status must be the same bare and probed. */
#include <cstdio>
#include <execinfo.h>
#include <stdexcept>

#define NOINLINE extern "C" __attribute__((noinline, noclone))

volatile long sink;

NOINLINE long tail_c(long x) {
    sink += x;
    if (x < 0) return x;
    throw std::runtime_error("from the end of a tail chain");
}
NOINLINE long tail_b(long x) { sink += 1; return tail_c(x + 1); }
NOINLINE long tail_a(long x) { sink += 2; return tail_b(x + 1); }

NOINLINE long walk_c(long x) {
    void *frames[64];
    int n = backtrace(frames, 64);
    std::printf("frames seen: %d\n", n);
    return x + n;
}
NOINLINE long walk_b(long x) { sink += 1; return walk_c(x + 1); }
NOINLINE long walk_a(long x) { sink += 2; return walk_b(x + 1); }

int main() {
    long caught = 0;
    for (long i = 0; i < 100; i++) {
        try {
            tail_a(i);
        } catch (const std::exception &) {
            caught++;
        }
    }
    std::printf("caught: %ld\n", caught);
    return walk_a(1) > 0 ? 0 : 1;
}
