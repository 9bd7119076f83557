/* backtrace() from a probed frame must give the same frames as bare. */
#include <execinfo.h>
#include <stdio.h>

#define NOIPA __attribute__((noipa))

NOIPA int innermost(void) {
    void *frames[64];
    int n = backtrace(frames, 64);
    /* Print offsets within the main program only: stable across runs (PIE). */
    extern char __executable_start;
    for (int i = 0; i < n; i++) {
        long off = (char *)frames[i] - &__executable_start;
        if (off >= 0 && off < 0x1000000) printf("frame %d: +%lx\n", i, off);
        else printf("frame %d: elsewhere\n", i);
    }
    return n;
}
NOIPA int middle(void) { return innermost() + 1; }
NOIPA int outer(void) { return middle() + 1; }

int main(void) {
    printf("depth: %d\n", outer());
    return 0;
}
