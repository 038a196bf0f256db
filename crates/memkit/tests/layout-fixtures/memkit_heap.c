/* Allocates small blocks and one huge block with malloc, touches them, prints
 * "ready small=ADDR huge=ADDR" and waits until stdin closes. Run under
 * LD_PRELOAD=libmemkit.so, the blocks live in memkit's 4 MiB-aligned
 * segments and huge mappings, which `memkit maps` should label as memkit's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_COUNT 2000
#define SMALL_SIZE 1000
#define HUGE_SIZE (24u << 20)

int main(void) {
    static char *small[SMALL_COUNT];
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 0; i < SMALL_COUNT; i++) {
        small[i] = malloc(SMALL_SIZE);
        if (small[i] == NULL)
            return 2;
        memset(small[i], i, SMALL_SIZE);
    }
    char *huge = malloc(HUGE_SIZE);
    if (huge == NULL)
        return 2;
    memset(huge, 1, HUGE_SIZE);
    printf("ready small=%p huge=%p\n", (void *)small[SMALL_COUNT / 2], (void *)huge);
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
    }
    free(huge);
    for (int i = 0; i < SMALL_COUNT; i++)
        free(small[i]);
    return 0;
}
