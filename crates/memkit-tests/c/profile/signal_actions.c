/* What a program sees of the profiler's SIGHUP, SIGINT and SIGTERM
 * handlers: nothing. Each action reads back as SIG_DFL (as without the
 * profiler), a handler saved and set back is the one saved, and SIGTERM
 * set back to SIG_DFL still ends the program, with its profile written
 * (leak_site: 2 x 1234 B). Python read foreign handlers there
 * (signal.getsignal gave None): its forkserver children died restoring
 * them. glibc's signal(), sysv_signal() and sigset() are seen the same
 * way (they set the action inside glibc, past an interposed sigaction).
 * Exits 1 with a message when an action reads back otherwise. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noipa)) void *leak_site(size_t n) { return malloc(n); }

static void on_sig(int sig) { (void)sig; }

typedef void (*handler_t)(int);

/* One of glibc's signal(3) forms: `set(sig, h)` returns the old handler. */
static int through(handler_t (*set)(int, handler_t), const char *name, int sig) {
    handler_t old = set(sig, on_sig);
    if (old != SIG_DFL) {
        printf("%s(%d): the handler replaced was %p, not SIG_DFL\n", name, sig, (void *)old);
        return 0;
    }
    old = set(sig, SIG_DFL);
    if (old != on_sig) {
        printf("%s(%d): the program's handler did not come back\n", name, sig);
        return 0;
    }
    if (set(sig, SIG_DFL) != SIG_DFL) {
        printf("%s(%d): SIG_DFL set back did not read back\n", name, sig);
        return 0;
    }
    return 1;
}

static int is_default(int sig, const char *when) {
    struct sigaction old;
    if (sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL) {
        printf("signal %d %s: handler %p, not SIG_DFL\n", sig, when, (void *)old.sa_handler);
        return 0;
    }
    return 1;
}

int main(void) {
    static volatile void *keep[2];
    for (int i = 0; i < 2; i++)
        keep[i] = leak_site(1234);
    const int sigs[] = {SIGHUP, SIGINT, SIGTERM};
    for (int i = 0; i < 3; i++) {
        int sig = sigs[i];
        if (!is_default(sig, "at start"))
            return 1;
        struct sigaction mine, saved, back;
        memset(&mine, 0, sizeof mine);
        mine.sa_handler = on_sig;
        if (sigaction(sig, &mine, &saved) != 0 || saved.sa_handler != SIG_DFL) {
            printf("signal %d: the action replaced was not SIG_DFL\n", sig);
            return 1;
        }
        if (sigaction(sig, &saved, &back) != 0 || back.sa_handler != on_sig) {
            printf("signal %d: the program's handler did not read back\n", sig);
            return 1;
        }
        if (!is_default(sig, "set back"))
            return 1;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        if (!through(signal, "signal", sig) || !through(sysv_signal, "sysv_signal", sig) ||
            !through(sigset, "sigset", sig))
            return 1;
#pragma GCC diagnostic pop
        if (!is_default(sig, "after signal()"))
            return 1;
    }
    printf("all default\n");
    fflush(stdout);
    raise(SIGTERM);
    return 2;
}
