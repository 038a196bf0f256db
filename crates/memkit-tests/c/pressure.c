/* pressure: malloc under an address-space limit (ulimit -v).
 *
 * Usage: pressure MIB
 *   Sets RLIMIT_AS to the current VmSize + MIB MiB, then, with no
 *   allocation before (no stdio buffers, /proc read with open/read):
 *   1. fills the space with 1 MiB blocks (each touched) until malloc fails;
 *   2. at exhaustion, counts how many 64-byte mallocs still succeed (up to
 *      100000), then frees them;
 *   3. frees every 1 MiB block, and checks that malloc(100) succeeds;
 *   4. fills again with 1 MiB blocks: the freed space must be usable again.
 * Prints `VMSIZE_START <kB>`, `BIG <n1>`, `SMALL_AT_EXHAUSTION <n>`,
 * `SMALL_AFTER_FREE ok|NULL`, `BIG_AGAIN <n2>`, then `RESULT ok` when
 * n2 >= n1 - 2 and the small malloc after free succeeded (exit 0), else
 * `RESULT fail` (exit 1). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

static long vmsize_kb(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *v = strstr(buf, "VmSize:");
    return v ? atol(v + 7) : -1;
}

#define MAXB 100000

static void *big[MAXB];
static void *small[MAXB];

static int fill(void) {
    int n = 0;
    while (n < MAXB) {
        char *p = malloc(1 << 20);
        if (!p)
            break;
        p[0] = 1;
        p[(1 << 20) - 1] = 1;
        big[n++] = p;
    }
    return n;
}

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 48;
    setvbuf(stdout, NULL, _IONBF, 0);
    long start = vmsize_kb();
    printf("VMSIZE_START %ld\n", start);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)(start + mib * 1024) * 1024;
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
        perror("setrlimit");
        return 2;
    }
    int n1 = fill();
    printf("BIG %d\n", n1);
    int ns = 0;
    while (ns < MAXB && (small[ns] = malloc(64)) != NULL)
        ns++;
    printf("SMALL_AT_EXHAUSTION %d\n", ns);
    for (int i = 0; i < ns; i++)
        free(small[i]);
    for (int i = 0; i < n1; i++)
        free(big[i]);
    errno = 0;
    char *s = malloc(100);
    printf("SMALL_AFTER_FREE %s\n", s ? "ok" : "NULL");
    if (s)
        memset(s, 1, 100);
    free(s);
    int n2 = fill();
    printf("BIG_AGAIN %d\n", n2);
    for (int i = 0; i < n2; i++)
        free(big[i]);
    int ok = s != NULL && n2 >= n1 - 2 && n1 > 0;
    printf("RESULT %s\n", ok ? "ok" : "fail");
    return ok ? 0 : 1;
}
