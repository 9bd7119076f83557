/* Threads that keep calling probed functions until a line (or end of
   file) arrives on stdin, for snapshots taken while they run. Prints its
   pid and "ready", and at the end how many calls of work_step it made.
   work_step calls work_leaf twice. Usage: workers THREADS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))
volatile long sink;
static volatile int stop;
static long calls[64];

NOIPA long work_leaf(long x) { sink = x; return x + 1; }
NOIPA long work_step(long x) { return work_leaf(x) + work_leaf(x + 1); }

static void *worker(void *arg) {
    long i = (long)arg, n = 0, s = 0;
    while (!stop) {
        s += work_step(n++);
        /* Pauses keep a shared machine usable; the calls never stop for long. */
        if (n % 256 == 0) usleep(100);
    }
    calls[i] = n;
    return (void *)s;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (n > 64) n = 64;
    pthread_t t[64];
    for (long i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    printf("ready %d\n", getpid());
    fflush(stdout);
    getchar();
    stop = 1;
    long total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        total += calls[i];
    }
    printf("steps %ld\n", total);
    return 0;
}
