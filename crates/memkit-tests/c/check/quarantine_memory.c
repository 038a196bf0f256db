/* What a quarantine costs when its blocks change size: first a million
 * 16-byte blocks freed (a 4 MiB quarantine of them holds some 37,000
 * records), then 20,000 blocks of 4 KiB (one of them holds 800). The
 * records the first needed used to stay resident, unused, beside the
 * 4 MiB of 4 KiB blocks the second held: the peak rose 2 MiB from the
 * end of the first phase to the end of the second.
 *
 *   quarantine_memory    prints "RSS small <KiB> peak large <KiB>"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') v = atol(line + n + 1);
    fclose(f);
    return v;
}

static void pairs(size_t size, long n) {
    for (long i = 0; i < n; i++) {
        unsigned char *p = malloc(size);
        if (!p) {
            perror("malloc");
            exit(2);
        }
        p[0] = (unsigned char)i;
        p[size - 1] = (unsigned char)(i >> 8);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
}

int main(void) {
    pairs(16, 1000000);
    long small = status_kib("VmRSS");
    pairs(4096, 20000);
    long large = status_kib("VmHWM");
    printf("RSS small %ld peak large %ld\n", small, large);
    return 0;
}
