/* Loads a plugin with dlopen, calls into it, closes it, loads it again. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    for (int round = 0; round < 2; round++) {
        void *h = dlopen(argv[1], RTLD_NOW);
        if (!h) {
            printf("dlopen failed: %s\n", dlerror());
            return 1;
        }
        long (*run)(long) = (long (*)(long))dlsym(h, "plugin_run");
        printf("round %d: %ld\n", round, run(100));
        dlclose(h);
    }
    return 0;
}
