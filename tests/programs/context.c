/* makecontext/swapcontext: a coroutine ping-pongs with main, both probed. */
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#define NOIPA __attribute__((noipa))

static ucontext_t main_ctx, co_ctx;
volatile long sink;

NOIPA long co_step(long i) { sink += i; return i; }
NOIPA long main_step(long i) { sink -= i; return i; }

NOIPA void coroutine(void) {
    for (long i = 0; i < 100; i++) {
        co_step(i);
        swapcontext(&co_ctx, &main_ctx);
    }
}

NOIPA long run_coroutine(void) {
    static char stack[256 * 1024];
    getcontext(&co_ctx);
    co_ctx.uc_stack.ss_sp = stack;
    co_ctx.uc_stack.ss_size = sizeof stack;
    co_ctx.uc_link = &main_ctx;
    makecontext(&co_ctx, coroutine, 0);
    long total = 0;
    for (long i = 0; i < 101; i++) {
        swapcontext(&main_ctx, &co_ctx);
        total += main_step(i);
    }
    return total;
}

int main(void) {
    printf("total: %ld\n", run_coroutine());
    return 0;
}
