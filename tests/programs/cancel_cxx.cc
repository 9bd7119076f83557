// Cancelled C++ threads: the innermost probed frame has no landing pad, so
// only real return addresses let the forced unwind reach the destructors above.
#include <pthread.h>
#include <unistd.h>
#include <cstdio>
#include <atomic>
#define NOIPA __attribute__((noipa))
std::atomic<int> dtors{0};
struct Guard { ~Guard() { dtors++; } };
volatile long sink;
NOIPA void blocked() { for (;;) { sink++; sleep(1); } }
NOIPA void middle() { Guard g; blocked(); sink++; }
extern "C" void *body(void *) { Guard g; middle(); return nullptr; }
int main() {
  pthread_t t[4];
  for (auto &x : t) pthread_create(&x, nullptr, body, nullptr);
  usleep(100000);
  for (auto &x : t) pthread_cancel(x);
  for (auto &x : t) pthread_join(x, nullptr);
  printf("destructors %d\n", dtors.load());
}
