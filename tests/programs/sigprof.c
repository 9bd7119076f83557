/* A profiling timer at a high rate whose handler calls probed functions
   while probed code runs. Counts must stay exact. With a second argument
   `backtrace` the handler also walks the stack, as a sampling profiler
   does, wherever the probed code was interrupted (inside the agent's stubs
   included). */
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define NOIPA __attribute__((noipa))

static volatile long handled;
static int walk;
static volatile long walked;
volatile long sink;

NOIPA long in_handler(long x) { sink += x; return x + 1; }
NOIPA long worker_leaf(long x) { sink ^= x; return x * 3; }
NOIPA long worker(long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += worker_leaf(i);
    return s;
}

static void on_prof(int sig) {
    (void)sig;
    in_handler(handled);
    if (walk) {
        void *frames[64];
        if (backtrace(frames, 64) > 0) walked++;
    }
    handled++;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 2000;
    walk = argc > 2 && strcmp(argv[2], "backtrace") == 0;
    if (walk) {
        void *frames[4];
        backtrace(frames, 4); /* loads the unwinder before any handler needs it */
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval it = { { 0, 50 }, { 0, 50 } };  /* every 50 µs of CPU time */
    setitimer(ITIMER_PROF, &it, NULL);
    long s = 0;
    for (long r = 0; r < rounds; r++) s += worker(1000);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_PROF, &off, NULL);
    printf("sum: %ld\n", s);
    /* The handler count varies run to run: report it on stderr for the test. */
    fprintf(stderr, "handled: %ld\n", handled);
    if (walk) fprintf(stderr, "walked: %ld\n", walked);
    return 0;
}
