/* Many threads through probes that are being removed live: workers call a
   mix of functions, short-lived threads come and go, one thread forks
   children that call probed code, and a profiling timer calls probed code
   from its handler. The printed total is deterministic.
   Usage: stress THREADS ROUNDS */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))
volatile long sink;

NOIPA long cold_a(long x) { sink = x; return x + 1; }
NOIPA long cold_b(long x) { sink = x; return x ^ 5; }
NOIPA long cold_c(long x) { sink = x; return x * 3; }
NOIPA long warm(long x) {
    long s = 0;
    for (int i = 0; i < 200; i++) s += (x * i) % 7;
    return s;
}
NOIPA long step(long x) { return cold_a(x) + cold_b(x) + cold_c(x) + warm(x); }
NOIPA long in_handler(long x) { sink = x; return x; }

static void on_prof(int sig) { (void)sig; in_handler(1); }

static long rounds;
static NOIPA void *worker(void *arg) {
    long id = (long)arg, s = 0;
    for (long r = 0; r < rounds; r++) s += step(r + id) & 0xff;
    return (void *)s;
}

static NOIPA void *short_lived(void *arg) {
    (void)arg;
    return (void *)(step(7) & 0xff);
}

static NOIPA void *forker(void *arg) {
    (void)arg;
    for (int i = 0; i < 5; i++) {
        pid_t p = fork();
        if (p == 0) {
            long s = 0;
            for (int j = 0; j < 1000; j++) s += step(j) & 0xff;
            _exit(s == 0 ? 1 : 0);
        }
        int st;
        waitpid(p, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return (void *)1;
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    rounds = argc > 2 ? atol(argv[2]) : 20000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_prof;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPROF, &sa, NULL);
    struct itimerval it = { { 0, 200 }, { 0, 200 } };
    setitimer(ITIMER_PROF, &it, NULL);
    pthread_t *t = calloc(threads, sizeof *t), f;
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    pthread_create(&f, NULL, forker, NULL);
    long shorts = 0;
    for (int i = 0; i < 200; i++) {
        pthread_t s;
        void *r;
        pthread_create(&s, NULL, short_lived, NULL);
        pthread_join(s, &r);
        shorts += (long)r;
    }
    long total = 0;
    for (int i = 0; i < threads; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    void *fr;
    pthread_join(f, &fr);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_PROF, &off, NULL);
    printf("total %ld shorts %ld forks %s\n", total, shorts, fr ? "failed" : "ok");
    return 0;
}
