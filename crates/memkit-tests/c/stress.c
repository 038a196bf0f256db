/* Multi-threaded stress with content checks and cross-thread frees.
 *
 * THREADS threads each run OPS operations: allocate a block of a random size
 * (mostly 1..8192 bytes, some 64 KiB..1 MiB), fill it with a pattern derived
 * from (thread, index, size), and either keep it in a private slot table
 * (freeing / reallocating what was there after checking it) or push it through
 * a shared, lock-protected ring, from which any thread pops a block, checks the
 * pattern and frees it. Every block is checked before it is freed.
 *
 * Usage: stress [threads] [ops-per-thread]
 * Exit 0 on success; prints the first corrupted block and aborts otherwise.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 4096
#define SLOTS 2048

struct hdr {
    uint64_t magic;
    uint64_t seed;
    size_t size;
};

static int threads = 4;
static long ops = 1000000;

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static void *ring[RING];
static size_t ring_head, ring_count;
static long cross_frees[64];

static uint64_t rng_next(uint64_t *s) {
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static size_t pick_size(uint64_t *rng) {
    uint64_t r = rng_next(rng);
    if ((r & 255) == 0) return 65536 + (size_t)((r >> 8) % (1048576 - 65536 + 1)); /* 64 KiB .. 1 MiB */
    unsigned bits = (unsigned)((r >> 8) % 14);                                      /* log-uniform 1 .. 8192 */
    size_t s = ((size_t)1 << bits) + (size_t)((r >> 16) & (((size_t)1 << bits) - 1));
    if (s > 8192) s = 8192;
    return s ? s : 1;
}

static void fill(unsigned char *p, size_t size, uint64_t seed) {
    if (size >= sizeof(struct hdr)) {
        struct hdr h = {0x6d656d6b69746b74ULL ^ seed, seed, size};
        memcpy(p, &h, sizeof h);
        size_t words = (size - sizeof h) / 8;
        uint64_t *w = (uint64_t *)(p + sizeof h);
        uint64_t v = mix(seed);
        for (size_t i = 0; i < words; i++) w[i] = v + i * 0x9E3779B97F4A7C15ULL;
        for (size_t i = sizeof h + words * 8; i < size; i++) p[i] = (unsigned char)(seed + i);
    } else {
        for (size_t i = 0; i < size; i++) p[i] = (unsigned char)(seed * 31 + i);
    }
}

static void check(const unsigned char *p, size_t size, uint64_t seed, const char *where) {
    if (size >= sizeof(struct hdr)) {
        struct hdr h;
        memcpy(&h, p, sizeof h);
        if (h.magic != (0x6d656d6b69746b74ULL ^ seed) || h.seed != seed || h.size != size) {
            fprintf(stderr, "stress: %s: corrupted header in block %p size %zu seed %llx\n", where, (void *)p, size,
                    (unsigned long long)seed);
            abort();
        }
        size_t words = (size - sizeof h) / 8;
        const uint64_t *w = (const uint64_t *)(p + sizeof h);
        uint64_t v = mix(seed);
        for (size_t i = 0; i < words; i++)
            if (w[i] != v + i * 0x9E3779B97F4A7C15ULL) {
                fprintf(stderr, "stress: %s: block %p size %zu: word %zu corrupted\n", where, (void *)p, size, i);
                abort();
            }
        for (size_t i = sizeof h + words * 8; i < size; i++)
            if (p[i] != (unsigned char)(seed + i)) {
                fprintf(stderr, "stress: %s: block %p size %zu: byte %zu corrupted\n", where, (void *)p, size, i);
                abort();
            }
    } else {
        for (size_t i = 0; i < size; i++)
            if (p[i] != (unsigned char)(seed * 31 + i)) {
                fprintf(stderr, "stress: %s: small block %p size %zu: byte %zu corrupted\n", where, (void *)p, size,
                        i);
                abort();
            }
    }
}

/* Ring entries carry their own header; tiny blocks are rounded up to hold it. */
struct ring_block {
    size_t size;
    uint64_t seed;
    /* payload follows */
};

static void check_and_free_ring_block(void *b, int tid) {
    struct ring_block *rb = b;
    check((unsigned char *)(rb + 1), rb->size, rb->seed, "ring pop");
    free(b);
    cross_frees[tid]++;
}

struct slot {
    unsigned char *p;
    size_t size;
    uint64_t seed;
};

static void *worker(void *arg) {
    int tid = (int)(intptr_t)arg;
    uint64_t rng = 0x1234567ULL * (uint64_t)(tid + 1) + 99;
    struct slot *slots = calloc(SLOTS, sizeof *slots);
    if (!slots) { fprintf(stderr, "stress: calloc slots failed\n"); abort(); }
    for (long i = 0; i < ops; i++) {
        uint64_t seed = ((uint64_t)tid << 40) ^ (uint64_t)i ^ 0xabcdef;
        uint64_t r = rng_next(&rng);
        size_t size = pick_size(&rng);
        switch (r % 8) {
        case 0:
        case 1:
        case 2: { /* private slot: check + free the old block, place a new one */
            struct slot *s = &slots[(r >> 8) % SLOTS];
            if (s->p) {
                check(s->p, s->size, s->seed, "slot free");
                free(s->p);
            }
            s->p = (r >> 20) & 1 ? malloc(size) : calloc(1, size);
            if (!s->p) { fprintf(stderr, "stress: allocation of %zu failed\n", size); abort(); }
            if (((uintptr_t)s->p & 15) != 0) { fprintf(stderr, "stress: misaligned %p\n", (void *)s->p); abort(); }
            if (!((r >> 20) & 1)) {
                for (size_t k = 0; k < size; k += 61)
                    if (s->p[k]) { fprintf(stderr, "stress: calloc(%zu) not zeroed at %zu\n", size, k); abort(); }
            }
            s->size = size;
            s->seed = seed;
            fill(s->p, size, seed);
            break;
        }
        case 3: { /* private slot: realloc, check the kept prefix */
            struct slot *s = &slots[(r >> 8) % SLOTS];
            if (!s->p) break;
            check(s->p, s->size, s->seed, "before realloc");
            unsigned char *q = realloc(s->p, size);
            if (!q) { fprintf(stderr, "stress: realloc to %zu failed\n", size); abort(); }
            size_t keep = size < s->size ? size : s->size;
            /* The first `keep` bytes must have survived: re-derive them. */
            unsigned char *ref = malloc(s->size);
            fill(ref, s->size, s->seed);
            if (memcmp(ref, q, keep) != 0) {
                fprintf(stderr, "stress: realloc %zu -> %zu lost data\n", s->size, size);
                abort();
            }
            free(ref);
            s->p = q;
            s->size = size;
            s->seed = seed;
            fill(q, size, seed);
            break;
        }
        default: { /* shared ring: push a block, pop (and free) one of somebody's */
            if (size > 8192 && (r >> 30) % 4) size = 8192; /* keep ring memory moderate */
            struct ring_block *b = malloc(sizeof *b + size);
            if (!b) { fprintf(stderr, "stress: malloc %zu failed\n", size); abort(); }
            b->size = size;
            b->seed = seed;
            fill((unsigned char *)(b + 1), size, seed);
            void *victim = NULL;
            pthread_mutex_lock(&ring_lock);
            if (ring_count == RING || (ring_count > RING / 2 && (r >> 40) & 1)) {
                victim = ring[ring_head];
                ring_head = (ring_head + 1) % RING;
                ring_count--;
            }
            ring[(ring_head + ring_count) % RING] = b;
            ring_count++;
            pthread_mutex_unlock(&ring_lock);
            if (victim) check_and_free_ring_block(victim, tid);
            break;
        }
        }
    }
    for (int k = 0; k < SLOTS; k++)
        if (slots[k].p) {
            check(slots[k].p, slots[k].size, slots[k].seed, "final slot");
            free(slots[k].p);
        }
    free(slots);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) threads = atoi(argv[1]);
    if (argc > 2) ops = atol(argv[2]);
    if (threads < 1 || threads > 64 || ops < 1) {
        fprintf(stderr, "usage: stress [threads<=64] [ops]\n");
        return 2;
    }
    pthread_t t[64];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "stress: pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    long drained = 0;
    while (ring_count) {
        check_and_free_ring_block(ring[ring_head], 0);
        ring_head = (ring_head + 1) % RING;
        ring_count--;
        drained++;
    }
    long total_cross = 0;
    for (int i = 0; i < threads; i++) total_cross += cross_frees[i];
    printf("stress: %d threads x %ld ops ok; %ld ring frees (%ld drained at the end)\n", threads, ops, total_cross,
           drained);
    return 0;
}
