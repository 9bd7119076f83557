/* Threads that each call a few probed functions, then stay parked while the
   program exits: their states are live in the exit snapshot, so its
   memory figure shows what a thread costs. Usage: parked THREADS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))
volatile long sink;
NOIPA long one(long x) { sink = x; return x + 1; }
NOIPA long two(long x) { sink = x; return one(x) * 2; }
NOIPA long three(long x) { sink = x; return two(x) + 3; }

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int parked;

static void *body(void *arg) {
    three((long)arg);
    pthread_mutex_lock(&m);
    parked++;
    pthread_cond_broadcast(&c);
    for (;;) pthread_cond_wait(&c, &m);
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 32;
    for (long i = 0; i < n; i++) {
        pthread_t t;
        pthread_create(&t, NULL, body, (void *)i);
    }
    pthread_mutex_lock(&m);
    while (parked < n) pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    printf("parked %d\n", n);
    return 0;
}
