/* cfrac: the allocation pattern of a continued-fraction factoring program
 * (the cfrac row of mimalloc-bench, a bignum program whose every
 * arithmetic result is a fresh heap object). For each of `numbers` random
 * integers N (40-50 bits, not squares) it expands sqrt(N) as a continued
 * fraction for `terms` terms, keeping the convergents p/q as heap bignums:
 * every term allocates new convergents and temporaries and frees the old
 * ones (short lifetimes, sizes growing from 8 to ~200 B), and every term
 * whose residue is smooth over the first 25 primes is kept as a relation
 * (a copy of p and an exponent vector) until N is done (longer lifetimes),
 * as cfrac collects relations for its matrix step.
 * Self-check: every term verifies p^2 - N q^2 = (-1)^(k+1) Q(k+1) in bignum
 * arithmetic, and every relation's exponents are multiplied out again.
 * Usage: cfrac [numbers] [terms]
 * Metric: ns_per_term. */
#include "common.h"

/* A non-negative bignum: n 32-bit limbs, least significant first, no
 * leading zero limb (zero has n == 0). */
struct bn {
    uint32_t n;
    uint32_t d[];
};

static uint64_t allocs;

static struct bn *bn_alloc(uint32_t n)
{
    struct bn *b = xmalloc(sizeof *b + sizeof b->d[0] * (n ? n : 1));
    b->n = n;
    allocs++;
    return b;
}

static struct bn *bn_norm(struct bn *b)
{
    while (b->n > 0 && b->d[b->n - 1] == 0)
        b->n--;
    return b;
}

static struct bn *bn_u64(uint64_t v)
{
    struct bn *b = bn_alloc(2);
    b->d[0] = (uint32_t)v;
    b->d[1] = (uint32_t)(v >> 32);
    return bn_norm(b);
}

static struct bn *bn_copy(const struct bn *a)
{
    struct bn *b = bn_alloc(a->n);
    memcpy(b->d, a->d, sizeof a->d[0] * a->n);
    return b;
}

static struct bn *bn_add(const struct bn *a, const struct bn *b)
{
    if (a->n < b->n) {
        const struct bn *t = a;
        a = b, b = t;
    }
    struct bn *r = bn_alloc(a->n + 1);
    uint64_t c = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        c += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
        r->d[i] = (uint32_t)c;
        c >>= 32;
    }
    r->d[a->n] = (uint32_t)c;
    return bn_norm(r);
}

static struct bn *bn_mul(const struct bn *a, const struct bn *b)
{
    struct bn *r = bn_alloc(a->n + b->n);
    memset(r->d, 0, sizeof r->d[0] * r->n);
    for (uint32_t i = 0; i < a->n; i++) {
        uint64_t c = 0;
        for (uint32_t j = 0; j < b->n; j++) {
            c += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
            r->d[i + j] = (uint32_t)c;
            c >>= 32;
        }
        r->d[i + b->n] = (uint32_t)c;
    }
    return bn_norm(r);
}

static struct bn *bn_mul_small(const struct bn *a, uint32_t m)
{
    struct bn *r = bn_alloc(a->n + 1);
    uint64_t c = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        c += (uint64_t)a->d[i] * m;
        r->d[i] = (uint32_t)c;
        c >>= 32;
    }
    r->d[a->n] = (uint32_t)c;
    return bn_norm(r);
}

static int bn_cmp(const struct bn *a, const struct bn *b)
{
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (uint32_t i = a->n; i-- > 0;)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

/* p * m + q, as cfrac's convergent step (two allocations, one freed). */
static struct bn *bn_mul_add(const struct bn *p, uint32_t m, const struct bn *q)
{
    struct bn *t = bn_mul_small(p, m);
    struct bn *r = bn_add(t, q);
    free(t);
    return r;
}

static uint64_t isqrt(uint64_t n)
{
    uint64_t x = n, y = (x + 1) / 2;
    while (y < x) {
        x = y;
        y = (x + n / x) / 2;
    }
    return x;
}

#define NPRIMES 25
static const uint32_t primes[NPRIMES] = {2,  3,  5,  7,  11, 13, 17, 19, 23, 29, 31, 37, 41,
                                         43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97};

struct relation {
    struct relation *next;
    struct bn *p;
    uint64_t q; /* the residue */
    unsigned char *exp;
};

/* The exponent vector of q over the factor base, or NULL if q is not
 * smooth. */
static unsigned char *factor(uint64_t q)
{
    unsigned char e[NPRIMES] = {0};
    for (int i = 0; i < NPRIMES && q > 1; i++)
        while (q % primes[i] == 0)
            q /= primes[i], e[i]++;
    if (q != 1)
        return NULL;
    unsigned char *v = xmalloc(NPRIMES);
    memcpy(v, e, NPRIMES);
    return v;
}

static void check_relation(const struct relation *r)
{
    uint64_t v = 1;
    for (int i = 0; i < NPRIMES; i++)
        for (int k = 0; k < r->exp[i]; k++)
            v *= primes[i];
    if (v != r->q || r->p->n == 0)
        fail("relation for residue %llu corrupted", (unsigned long long)r->q);
}

int main(int argc, char **argv)
{
    long numbers = arg_long(argc, argv, 1, 4000);
    long terms = arg_long(argc, argv, 2, 400);
    report_allocator();
    uint64_t rng = 0xcf4ac, relations = 0;
    double t0 = now_s();
    for (long x = 0; x < numbers; x++) {
        uint64_t N = rng_range(&rng, 1ULL << 40, 1ULL << 50), a0 = isqrt(N);
        if (a0 * a0 == N)
            N++;
        struct bn *NN = bn_u64(N);
        struct bn *p2 = bn_u64(1), *p1 = bn_u64(a0); /* p(k-1), p(k) */
        struct bn *q2 = bn_u64(0), *q1 = bn_u64(1);
        uint64_t m = 0, d = 1, a = a0;
        struct relation *rels = NULL;
        for (long k = 0; k < terms; k++) {
            /* The next partial quotient, and the residue Q(k+1) = d. */
            m = d * a - m;
            d = (N - m * m) / d;
            a = (a0 + m) / d;
            /* p1 = p(k), q1 = q(k): p(k)^2 - N q(k)^2 = (-1)^(k+1) d. */
            struct bn *pp = bn_mul(p1, p1), *qq = bn_mul(q1, q1);
            struct bn *nqq = bn_mul(NN, qq), *dd = bn_u64(d);
            struct bn *lhs = (k % 2 == 0) ? bn_add(pp, dd) : bn_add(nqq, dd);
            int ok = (k % 2 == 0) ? bn_cmp(lhs, nqq) == 0 : bn_cmp(lhs, pp) == 0;
            free(lhs), free(dd), free(nqq), free(qq), free(pp);
            if (!ok)
                fail("N=%llu term %ld: p^2 - N q^2 != %s%llu", (unsigned long long)N, k,
                     k % 2 ? "" : "-", (unsigned long long)d);
            unsigned char *e = factor(d);
            if (e != NULL) {
                struct relation *r = xmalloc(sizeof *r);
                *r = (struct relation){rels, bn_copy(p1), d, e};
                rels = r;
                relations++;
            }
            /* The next convergent; the oldest one dies. */
            struct bn *p = bn_mul_add(p1, (uint32_t)a, p2);
            struct bn *q = bn_mul_add(q1, (uint32_t)a, q2);
            free(p2), free(q2);
            p2 = p1, q2 = q1, p1 = p, q1 = q;
        }
        while (rels != NULL) {
            struct relation *next = rels->next;
            check_relation(rels);
            free(rels->p), free(rels->exp), free(rels);
            rels = next;
        }
        free(p1), free(p2), free(q1), free(q2), free(NN);
    }
    double t1 = now_s();
    metric("ns_per_term", (t1 - t0) * 1e9 / ((double)numbers * terms), "ns");
    metric("allocations", (double)allocs, "count");
    metric("relations", (double)relations, "count");
    finish_ok();
    return 0;
}
