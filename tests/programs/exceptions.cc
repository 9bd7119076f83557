// C++ exceptions through probed frames: thrown deep, caught in the middle,
// rethrown through several probed frames, caught again; destructors run.
#include <cstdio>
#include <stdexcept>
#include <string>

#define NOIPA __attribute__((noipa))

static int destructed = 0;
struct Guard { ~Guard() { destructed++; } };

NOIPA int thrower(int depth) {
    Guard g;
    if (depth == 0) throw std::runtime_error("boom");
    return thrower(depth - 1) + 1;
}

NOIPA int catch_and_rethrow(int depth) {
    Guard g;
    try {
        return thrower(depth);
    } catch (const std::runtime_error &e) {
        throw;  // rethrow through our caller's probed frames
    }
}

NOIPA int pass_through(int depth) { Guard g; return catch_and_rethrow(depth) + 1; }

NOIPA int catcher(int depth) {
    try {
        return pass_through(depth);
    } catch (const std::exception &e) {
        return -1;
    }
}

NOIPA int catch_inside(int depth) {
    int caught = 0;
    for (int i = 0; i < 3; i++) {
        try { thrower(depth); } catch (...) { caught++; }
    }
    return caught;
}

volatile int work_sink;
NOIPA int normal_work(int x) { work_sink = x; return x * 3; }

int main() {
    int total = 0;
    for (int i = 0; i < 100; i++) total += catcher(5);
    printf("catcher total: %d\n", total);
    printf("caught inside: %d\n", catch_inside(3));
    printf("normal after: %d\n", normal_work(14));
    printf("destructors: %d\n", destructed);
    return 0;
}
