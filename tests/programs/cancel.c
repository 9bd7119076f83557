/* Threads cancelled while blocked inside probed functions, with a cleanup
   handler; the program goes on and calls probed code afterwards. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))
volatile long sink;
static int cleanups;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;

static void cleanup(void *arg) {
    (void)arg;
    pthread_mutex_lock(&m);
    cleanups++;
    pthread_mutex_unlock(&m);
}

NOIPA void blocked(void) {
    for (;;) {
        sink++;
        sleep(1); /* a cancellation point */
    }
}
NOIPA void middle(void) { blocked(); sink++; }
NOIPA void *body(void *arg) {
    pthread_cleanup_push(cleanup, arg);
    middle();
    pthread_cleanup_pop(0);
    return NULL;
}
NOIPA long after(long x) { sink = x; return x + 1; }

int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, body, NULL);
    usleep(100000);
    for (int i = 0; i < 4; i++) pthread_cancel(t[i]);
    int cancelled = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        cancelled += r == PTHREAD_CANCELED;
    }
    long s = 0;
    for (int i = 0; i < 10; i++) s = after(s);
    printf("cancelled %d cleanups %d after %ld\n", cancelled, cleanups, s);
    return 0;
}
