/* espresso: the allocation pattern of a two-level logic minimiser (the
 * espresso row of mimalloc-bench): many small cube objects with varied
 * lifetimes and cube sets that grow by realloc. For each of `functions`
 * random Boolean functions of 7-10 inputs it finds all prime implicants
 * the Quine-McCluskey way: each level merges pairs of cubes that differ in
 * one cared-for input into a new cube (a heap object, deduplicated through
 * a chained hash set whose nodes are heap objects too); cubes that merged
 * die with their level, cubes that did not are primes and live until the
 * function is done. Then a greedy cover picks primes until every minterm of
 * the on-set is covered, building and dropping candidate lists as it goes.
 * Self-check: every prime covers only on-set minterms and cannot be grown,
 * every on-set minterm is covered by a prime, and the chosen cover covers
 * the whole on-set.
 * Usage: espresso [functions]
 * Metrics: ns_per_function, primes (total). */
#include "common.h"

struct cube {
    uint32_t val;  /* values of the cared-for inputs */
    uint32_t care; /* inputs the cube depends on */
    int used;      /* merged into a bigger cube */
};

struct set {
    struct cube **c;
    size_t n, cap;
};

static void set_add(struct set *s, struct cube *c)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->c = xrealloc(s->c, sizeof *s->c * s->cap);
    }
    s->c[s->n++] = c;
}

struct node {
    struct node *next;
    struct cube *c;
};

static uint64_t allocs;

static struct cube *cube_new(uint32_t val, uint32_t care)
{
    struct cube *c = xmalloc(sizeof *c);
    *c = (struct cube){val & care, care, 0};
    allocs++;
    return c;
}

static int by_group(const void *a, const void *b)
{
    const struct cube *x = *(struct cube *const *)a, *y = *(struct cube *const *)b;
    if (x->care != y->care)
        return x->care < y->care ? -1 : 1;
    int px = __builtin_popcount(x->val), py = __builtin_popcount(y->val);
    if (px != py)
        return px - py;
    return (x->val > y->val) - (x->val < y->val);
}

/* Merges the level `cur` into the next level; unmerged cubes go to primes. */
static struct set next_level(struct set *cur, struct set *primes)
{
    struct set next = {0};
    size_t nb = cur->n * 2 + 1;
    struct node **bucket = calloc(nb, sizeof *bucket);
    if (bucket == NULL)
        fail("calloc");
    qsort(cur->c, cur->n, sizeof *cur->c, by_group);
    for (size_t g = 0; g < cur->n;) {
        /* [g, h) share care and popcount; [h, e) is the next popcount. */
        struct cube *first = cur->c[g];
        int pc = __builtin_popcount(first->val);
        size_t h = g;
        while (h < cur->n && cur->c[h]->care == first->care && __builtin_popcount(cur->c[h]->val) == pc)
            h++;
        size_t e = h;
        while (e < cur->n && cur->c[e]->care == first->care && __builtin_popcount(cur->c[e]->val) == pc + 1)
            e++;
        for (size_t i = g; i < h; i++) {
            for (size_t j = h; j < e; j++) {
                uint32_t diff = cur->c[i]->val ^ cur->c[j]->val;
                if ((diff & (diff - 1)) != 0)
                    continue;
                cur->c[i]->used = cur->c[j]->used = 1;
                uint32_t care = first->care & ~diff, val = cur->c[i]->val & care;
                size_t b = (size_t)(mix64(((uint64_t)care << 32) | val) % nb);
                struct node *nd = bucket[b];
                while (nd != NULL && (nd->c->care != care || nd->c->val != val))
                    nd = nd->next;
                if (nd != NULL)
                    continue;
                nd = xmalloc(sizeof *nd);
                nd->c = cube_new(val, care);
                nd->next = bucket[b];
                bucket[b] = nd;
                set_add(&next, nd->c);
            }
        }
        g = h;
    }
    for (size_t b = 0; b < nb; b++)
        for (struct node *nd = bucket[b], *nx; nd != NULL; nd = nx)
            nx = nd->next, free(nd);
    free(bucket);
    for (size_t i = 0; i < cur->n; i++) {
        if (cur->c[i]->used)
            free(cur->c[i]);
        else
            set_add(primes, cur->c[i]);
    }
    free(cur->c);
    return next;
}

/* Does the cube lie inside the on-set? */
static int inside(const unsigned char *on, uint32_t val, uint32_t care, uint32_t all)
{
    uint32_t free_bits = all & ~care, sub = 0;
    do {
        if (!on[val | sub])
            return 0;
        sub = (sub - free_bits) & free_bits;
    } while (sub != 0);
    return 1;
}

static void mark(unsigned char *covered, const struct cube *c, uint32_t all)
{
    uint32_t free_bits = all & ~c->care, sub = 0;
    do {
        covered[c->val | sub] = 1;
        sub = (sub - free_bits) & free_bits;
    } while (sub != 0);
}

int main(int argc, char **argv)
{
    long functions = arg_long(argc, argv, 1, 3000);
    report_allocator();
    uint64_t rng = 0xe5b7e550, total_primes = 0, total_cover = 0;
    unsigned char *on = xmalloc(1 << 11), *covered = xmalloc(1 << 11);
    double t0 = now_s();
    for (long f = 0; f < functions; f++) {
        int nv = (int)rng_range(&rng, 7, 10);
        uint32_t all = (1u << nv) - 1, density = (uint32_t)rng_range(&rng, 25, 60);
        struct set level = {0}, primes = {0};
        for (uint32_t m = 0; m <= all; m++) {
            on[m] = rng_next(&rng) % 100 < density;
            if (on[m])
                set_add(&level, cube_new(m, all));
        }
        size_t onset = level.n;
        while (level.n > 0)
            level = next_level(&level, &primes);
        free(level.c);
        /* The primes are implicants, maximal, and cover the on-set. */
        memset(covered, 0, all + 1);
        for (size_t i = 0; i < primes.n; i++) {
            struct cube *c = primes.c[i];
            if (!inside(on, c->val, c->care, all))
                fail("function %ld: a prime covers an off-set minterm", f);
            for (uint32_t b = c->care; b != 0; b &= b - 1)
                if (inside(on, c->val & ~(b & -b), c->care & ~(b & -b), all))
                    fail("function %ld: prime %x/%x can be grown", f, c->val, c->care);
            mark(covered, c, all);
        }
        for (uint32_t m = 0; m <= all; m++)
            if (covered[m] != on[m])
                fail("function %ld: minterm %u covered %d, on %d", f, m, covered[m], on[m]);
        /* Greedy cover: repeatedly take the prime covering most of what is
         * left, rebuilding the candidate list each pass. */
        memset(covered, 0, all + 1);
        size_t left = onset, chosen = 0;
        struct set cand = {0};
        for (size_t i = 0; i < primes.n; i++)
            set_add(&cand, primes.c[i]);
        while (left > 0) {
            struct cube *best = NULL;
            size_t best_gain = 0;
            struct set keep = {0};
            for (size_t i = 0; i < cand.n; i++) {
                struct cube *c = cand.c[i];
                uint32_t free_bits = all & ~c->care, sub = 0;
                size_t gain = 0;
                do {
                    gain += !covered[c->val | sub];
                    sub = (sub - free_bits) & free_bits;
                } while (sub != 0);
                if (gain == 0)
                    continue;
                set_add(&keep, c);
                if (gain > best_gain)
                    best = c, best_gain = gain;
            }
            free(cand.c);
            cand = keep;
            if (best == NULL)
                fail("function %ld: %zu minterms left and no prime covers them", f, left);
            mark(covered, best, all);
            left -= best_gain;
            chosen++;
        }
        free(cand.c);
        for (uint32_t m = 0; m <= all; m++)
            if (covered[m] != on[m])
                fail("function %ld: the cover misses minterm %u", f, m);
        total_primes += primes.n;
        total_cover += chosen;
        for (size_t i = 0; i < primes.n; i++)
            free(primes.c[i]);
        free(primes.c);
    }
    double t1 = now_s();
    free(on);
    free(covered);
    metric("ns_per_function", (t1 - t0) * 1e9 / (double)functions, "ns");
    metric("primes", (double)total_primes, "count");
    metric("cover", (double)total_cover, "count");
    metric("allocations", (double)allocs, "count");
    finish_ok();
    return 0;
}
