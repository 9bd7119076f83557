/* Many short-lived threads, each calling probed functions a known number of times. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOIPA __attribute__((noipa))

volatile long sink;
NOIPA long thread_leaf(long x) { sink += x; return x; }
NOIPA void *thread_body(void *arg) {
    long n = (long)arg;
    for (long i = 0; i < n; i++) thread_leaf(i);
    return NULL;
}
NOIPA void *exits_early(void *arg) {
    thread_leaf(1);
    pthread_exit(arg);
}

int main(int argc, char **argv) {
    int waves = argc > 1 ? atoi(argv[1]) : 50;
    for (int w = 0; w < waves; w++) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, thread_body, (void *)100L);
        for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    }
    pthread_t e;
    pthread_create(&e, NULL, exits_early, NULL);
    pthread_join(e, NULL);
    printf("threads done: %d\n", waves * 8 + 1);
    return 0;
}
