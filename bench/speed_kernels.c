/* Small speed probes for bench.py speed: does anything a start-up check
 * could run follow the slow and fast periods a program sees on a shared
 * machine? Prints ns per step of an ALU chain and of pointer chases whose
 * working sets fit L1, L2 and the last-level cache (the least of several
 * repetitions: noise only adds time). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"

static double alu(void) {
  volatile uint64_t sink;
  uint64_t x = 1;
  double best = 1e18;
  for (int r = 0; r < 20; r++) {
    double t0 = now_ns();
    for (int i = 0; i < 200000; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      x ^= x >> 17;
    }
    double t = now_ns() - t0;
    if (t < best) best = t;
  }
  sink = x;
  (void)sink;
  return best / 200000;
}

/* A random cycle through `bytes` of pointers. */
static double chase(size_t bytes) {
  size_t n = bytes / sizeof(void *);
  void **a = malloc(n * sizeof(void *));
  size_t *perm = malloc(n * sizeof(size_t));
  for (size_t i = 0; i < n; i++) perm[i] = i;
  srand(1);
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = (size_t)rand() % (i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (size_t i = 0; i < n; i++) a[perm[i]] = &a[perm[(i + 1) % n]];
  void **p = a;
  double best = 1e18;
  for (int r = 0; r < 10; r++) {
    double t0 = now_ns();
    for (int i = 0; i < 200000; i++) p = (void **)*p;
    double t = now_ns() - t0;
    if (t < best) best = t;
  }
  if (!p) puts("");
  free(a);
  free(perm);
  return best / 200000;
}

int main(void) {
  printf("alu %.3f l1 %.3f l2 %.3f llc %.3f\n", alu(), chase(16 << 10), chase(256 << 10),
         chase(4 << 20));
  return 0;
}
