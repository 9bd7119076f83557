/* Functions too small to patch, and one whose loop branches into its first bytes. */
#include <stdio.h>

__attribute__((noipa)) int big_enough(int x) {
    int s = 0;
    for (int i = 0; i < x; i++) s += i * x;
    return s;
}

/* 3 bytes: xor eax,eax; ret — too small for a 5-byte jump. */
__asm__(".text\n.globl tiny\n.type tiny,@function\ntiny:\n xor %eax,%eax\n ret\n.size tiny, .-tiny\n");
/* A loop that jumps back to byte 1, inside the bytes a patch would overwrite. */
__asm__(".text\n.globl loops_into_entry\n.type loops_into_entry,@function\n"
        "loops_into_entry:\n nop\n1: dec %edi\n jnz 1b\n mov %edi,%eax\n ret\n"
        ".size loops_into_entry, .-loops_into_entry\n");
int tiny(void);
int loops_into_entry(int);

int main(void) {
    printf("%d %d %d\n", big_enough(10), tiny(), loops_into_entry(5));
    return 0;
}
