/* Descriptor numbers the program gets must not change under the agent: the
   kernel backend holds descriptors of its own (ring, program, links), and
   they must stay out of the low numbers a program expects (the lowest free
   number is what open() returns). Opens /dev/null from main, from probed
   functions and from a thread, and prints every number it got. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))

volatile long sink;
NOIPA long work(long x) { sink += x; return x * 2 + 1; }
NOIPA int open_null(void) { work(1); return open("/dev/null", O_RDONLY); }
NOIPA int lowest_dup(int fd) { work(2); return dup(fd); }
NOIPA void *in_thread(void *arg) {
    int *out = arg;
    out[0] = open_null();
    out[1] = open_null();
    return NULL;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 100;
    int a = open("/dev/null", O_RDONLY);
    int b = open_null();
    int c = open_null();
    printf("main: %d %d %d\n", a, b, c);
    close(b);
    int d = open_null();  /* the hole left by b */
    int e = lowest_dup(a);
    printf("reuse: %d dup: %d\n", d, e);
    long s = 0;
    for (int i = 0; i < rounds; i++) s += work(i);
    int t[2];
    pthread_t th;
    pthread_create(&th, NULL, in_thread, t);
    pthread_join(th, NULL);
    printf("thread: %d %d\n", t[0], t[1]);
    int dup2_target = dup2(a, 9);
    int f = open_null();
    printf("dup2: %d next: %d sum: %ld\n", dup2_target, f, s);
    /* Nothing but what the program opened sits below 10. */
    for (int fd = 0; fd < 10; fd++)
        if (fcntl(fd, F_GETFD) != -1) printf("open fd %d\n", fd);
    return 0;
}
