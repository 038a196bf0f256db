/* glibc's introspection under the checker: mallinfo2 counts the bytes the
 * program's live blocks were asked with (exactly, in the calling thread),
 * the quarantine holds the freed ones, malloc_stats and malloc_info speak
 * for the checker, malloc_trim and mallopt answer as glibc's do.
 *
 *   introspect    prints one "NAME value" line per figure
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    puts("START"); /* stdout's buffer, allocated before the first figure */
    struct mallinfo2 a = mallinfo2();
    void *v[1000];
    for (int i = 0; i < 1000; i++) v[i] = malloc(100);
    struct mallinfo2 b = mallinfo2();
    printf("LIVE_DELTA %zu\n", b.uordblks - a.uordblks);
    printf("BLOCKS_DELTA %zu\n", b.ordblks - a.ordblks);
    printf("ARENA_COVERS %d\n", b.arena >= b.uordblks);
    for (int i = 0; i < 1000; i++) free(v[i]);
    struct mallinfo2 c = mallinfo2();
    printf("AFTER_FREE %zd\n", (ssize_t)(c.uordblks - a.uordblks));
    printf("QUARANTINE_GREW %d\n", c.fsmblks >= b.fsmblks + 100000);
    struct mallinfo m = mallinfo();
    printf("MALLINFO_MATCHES %d\n", (size_t)m.uordblks == c.uordblks);
    printf("MALLOPT %d %d\n", mallopt(M_MMAP_THRESHOLD, 1 << 20), mallopt(12345, 1));
    printf("TRIM %d\n", malloc_trim(0));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    printf("INFO %d\n", malloc_info(0, f));
    fclose(f);
    printf("INFO_INUSE %d\n", buf && strstr(buf, "<total type=\"inuse\"") != NULL);
    free(buf);
    printf("INFO_BAD %d\n", malloc_info(1, stdout));
    fflush(stdout);
    malloc_stats();
    return 0;
}
