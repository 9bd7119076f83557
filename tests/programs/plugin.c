/* A library the host loads with dlopen: its functions are probed when
   HOTPROBE_MODULES names it. Built with -shared -fPIC. */
#define NOIPA __attribute__((noipa))
volatile long plugin_sink;
NOIPA long plugin_step(long x) { plugin_sink = x; return x * 5 + 1; }
NOIPA long plugin_run(long n) {
    long s = 0;
    for (long i = 0; i < n; i++) s += plugin_step(i);
    return s;
}
