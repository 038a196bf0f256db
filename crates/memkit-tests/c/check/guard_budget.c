/* --guard all leaves the program room to map memory of its own: 32000 live
 * blocks (two mappings each when guarded), then 2000 mappings of the
 * program's, each split in two by a PROT_NONE page (so that none merge):
 * together more than vm.max_map_count's default 65530. Prints END and the
 * number of the program's mappings that failed. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define BLOCKS 32000
#define MAPS 2000

int main(void) {
    static char *blocks[BLOCKS];
    static char *maps[MAPS];
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(16);
        if (!blocks[i]) return 100;
        blocks[i][0] = 1;
    }
    int failed = 0;
    for (int i = 0; i < MAPS; i++) {
        maps[i] = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (maps[i] == MAP_FAILED || mprotect(maps[i] + 4096, 4096, PROT_NONE)) {
            failed++;
            maps[i] = NULL;
        }
    }
    printf("END FAILED %d\n", failed);
    for (int i = 0; i < MAPS; i++)
        if (maps[i]) munmap(maps[i], 8192);
    for (int i = 0; i < BLOCKS; i++) free(blocks[i]);
    return 0;
}
