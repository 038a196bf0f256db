/* A write past a 16-byte block that goes beyond its red zone into the
 * next core block, a free one on the core's free list (freed blocks
 * pushed out of the quarantine first): the core's hardening finds the
 * damaged link or tag when it next hands that block out, and must not
 * end the process with its one line alone: the checker reports first.
 *
 *   far_overflow contiguous   100 bytes written from the block's start
 *                             (its red zone is damaged too: an overflow
 *                             of that block)
 *   far_overflow skip         only bytes 32-63 past its start (the red
 *                             zone intact: heap corruption, the block
 *                             before it named)
 *   far_overflow ok           the same allocations, no write past
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void scribble(unsigned char *p, int from, int to) {
    for (int i = from; i < to; i++) ((volatile unsigned char *)p)[i] = 0x41;
}

__attribute__((noinline)) unsigned char *far_site_alloc(void) { return malloc(16); }

static void *v[4000];

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    for (int i = 0; i < 4000; i++) v[i] = malloc(16);
    for (int i = 0; i < 4000; i++) free(v[i]);
    for (int i = 0; i < 2000; i++) free(malloc(4096)); /* out of quarantine */
    unsigned char *p = far_site_alloc();
    if (!strcmp(argv[1], "contiguous"))
        scribble(p, 0, 100);
    else if (!strcmp(argv[1], "skip"))
        scribble(p, 32, 64);
    else
        scribble(p, 0, 16);
    for (int i = 0; i < 4000; i++) v[i] = malloc(16);
    puts("SURVIVED");
    for (int i = 0; i < 4000; i++) free(v[i]);
    free(p);
    return 0;
}
