/* Ticks until the file named by argv[1] exists (or 30 s pass), so that a test
   can ask the running agent for a snapshot. Prints the number of ticks. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))

volatile unsigned long sink;

NOIPA void tick(unsigned long i) {
    for (int k = 0; k < 1000; k++) sink += i * k;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    unsigned long ticks = 0;
    time_t start = time(NULL);
    while (access(argv[1], F_OK) != 0 && time(NULL) - start < 30) {
        tick(ticks++);
        usleep(1000);
    }
    printf("ticked\n");
    return 0;
}
