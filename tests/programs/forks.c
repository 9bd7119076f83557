/* fork, vfork+exec and exec of the program itself: one snapshot per image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))

volatile long sink;
NOIPA long counted(long x) { sink += x; return x; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0) {
        for (int i = 0; i < 7; i++) counted(i);
        printf("exec child done\n");
        return 0;
    }
    for (int i = 0; i < 3; i++) counted(i);          /* parent before fork: 3 */
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        for (int i = 0; i < 5; i++) counted(i);      /* fork child: 5 */
        printf("fork child done\n");
        exit(0);
    }
    waitpid(p, NULL, 0);
    fflush(stdout);
    pid_t v = vfork();
    if (v == 0) {
        counted(99);                                  /* vfork child: not metered */
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(v, &status, 0);
    printf("vfork child status %d\n", WEXITSTATUS(status));
    for (int i = 0; i < 2; i++) counted(i);          /* parent after: 2 more = 5 */
    fflush(stdout);
    execl(argv[0], argv[0], "exec-child", (char *)NULL);  /* the exec'd image: 7 */
    perror("execl");
    return 1;
}
