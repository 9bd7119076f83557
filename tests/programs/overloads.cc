// C++ with overloaded names, a namespace and a template; built stripped with
// -rdynamic for the .dynsym test.
#include <cstdio>

#define NOIPA __attribute__((noipa))

namespace shapes {
NOIPA int area(int side) { return side * side; }
NOIPA double area(double r) { return 3.0 * r * r; }
volatile int calls;
template <typename T> NOIPA T twice(T x) { calls = calls + 1; return x + x; }
}  // namespace shapes

int main() {
    int s = 0;
    for (int i = 0; i < 10; i++) s += shapes::area(i);
    double d = 0;
    for (int i = 0; i < 4; i++) d += shapes::area(1.0 * i);
    printf("%d %.1f %d %.1f\n", s, d, shapes::twice(21), shapes::twice(1.5));
    return 0;
}
