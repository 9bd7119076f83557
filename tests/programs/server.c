/* A server-like loop: serves "requests" until SIGTERM (default action, or
   its own handler with --handler), so tests can end it by signal. Prints
   its pid and "ready" so the test knows when to signal it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))
volatile long sink;
static volatile sig_atomic_t stop;

NOIPA long handle_request(long i) { sink += i; return i * 7; }
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--handler") == 0) signal(SIGTERM, on_term);
    printf("ready %d\n", getpid());
    fflush(stdout);
    long i = 0;
    while (!stop) {
        handle_request(i++);
        if (i % 1000 == 0) usleep(1000);
    }
    printf("stopped cleanly after own handler\n");
    return 3;
}
