/* Allocation-heavy loop for the check-mode comparison: batches of 1000
   blocks of random sizes 16-1024 B, written, freed in random order. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 1000;
    void *b[1000]; unsigned s = 12345; unsigned long sum = 0;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 1000; i++) { s = s * 1103515245 + 12345; size_t n = 16 + (s >> 8) % 1009; b[i] = malloc(n); memset(b[i], i, n); sum += ((unsigned char *)b[i])[n - 1]; }
        for (int i = 999; i > 0; i--) { s = s * 1103515245 + 12345; int j = (s >> 8) % (i + 1); void *t = b[i]; b[i] = b[j]; b[j] = t; }
        for (int i = 0; i < 1000; i++) free(b[i]);
    }
    printf("%lu\n", sum);
    return 0;
}
