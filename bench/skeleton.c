/* The least a return-hooking probe can cost on this machine, with no
   bookkeeping at all: the same ~3 ns `leaf` as call_cost.c, called through
   an entry that swaps the return address for an exit label (kept in one
   global) and, in the second variant, reads the TSC at entry and at exit.
   Prints ns per call of: the bare call, the swap alone, the swap and two
   timestamps. Single-threaded on purpose (the globals are the "shadow
   stack"). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;
unsigned long skeleton_saved, skeleton_start, skeleton_sum;

__attribute__((noipa)) unsigned long leaf(unsigned long x) {
    unsigned long y = x * 2654435761u;
    sink = y;
    return y ^ (y >> 13);
}

unsigned long swap_only(unsigned long);
unsigned long swap_and_clock(unsigned long);
__asm__(
    ".text\n"
    ".globl swap_only\n"
    "swap_only:\n"
    "  mov (%rsp), %rax\n"
    "  mov %rax, skeleton_saved(%rip)\n"
    "  lea 1f(%rip), %rax\n"
    "  mov %rax, (%rsp)\n"
    "  jmp leaf\n"
    "1: jmp *skeleton_saved(%rip)\n"
    ".globl swap_and_clock\n"
    "swap_and_clock:\n"
    "  push %rdx\n"
    "  rdtsc\n"
    "  mov %eax, skeleton_start(%rip)\n"
    "  pop %rdx\n"
    "  mov (%rsp), %rax\n"
    "  mov %rax, skeleton_saved(%rip)\n"
    "  lea 2f(%rip), %rax\n"
    "  mov %rax, (%rsp)\n"
    "  jmp leaf\n"
    "2: push %rax\n"
    "  push %rdx\n"
    "  rdtsc\n"
    "  sub skeleton_start(%rip), %eax\n"
    "  add %rax, skeleton_sum(%rip)\n"
    "  pop %rdx\n"
    "  pop %rax\n"
    "  jmp *skeleton_saved(%rip)\n");

#include "clock.h"

static double per_call(unsigned long (*f)(unsigned long), long n) {
    unsigned long acc = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) acc += f(i);
    double t1 = now_ns();
    sink = acc;
    return (t1 - t0) / n;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    printf("bare %.3f swap %.3f swap+clock %.3f ns/call\n", per_call(leaf, n),
           per_call(swap_only, n), per_call(swap_and_clock, n));
    return 0;
}
