/* longjmp and siglongjmp over probed frames, repeatedly, then normal calls. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>

#define NOIPA __attribute__((noipa))

static jmp_buf env;
static sigjmp_buf senv;

volatile int depth_sink;
/* Not tail calls: the store after each call keeps every frame on the stack. */
NOIPA void deep_jump(int depth) {
    if (depth == 0) longjmp(env, 1);
    deep_jump(depth - 1);
    depth_sink = depth;
}

NOIPA int jumper(int depth) {
    if (setjmp(env) == 0) {
        deep_jump(depth);
        return 0;
    }
    return 1;
}

NOIPA void deep_sigjump(int depth) {
    if (depth == 0) siglongjmp(senv, 2);
    deep_sigjump(depth - 1);
    depth_sink = depth;
}

NOIPA int sigjumper(int depth) {
    if (sigsetjmp(senv, 1) == 0) {
        deep_sigjump(depth);
        return 0;
    }
    return 2;
}

NOIPA int after(int x) { depth_sink = x; return x + 1; }

int main() {
    int jumps = 0;
    for (int i = 0; i < 1000; i++) jumps += jumper(10);
    for (int i = 0; i < 1000; i++) jumps += sigjumper(10);
    int a = 0;
    for (int i = 0; i < 100; i++) a = after(a);
    printf("jumps: %d after: %d\n", jumps, a);
    return 0;
}
