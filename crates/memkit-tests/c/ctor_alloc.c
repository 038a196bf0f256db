/* Allocation from other libraries' constructors, and dlopen/dlclose of TLS libraries.
 *
 * One file, three builds:
 *   gcc -shared -fPIC -DBUILD_CTOR_LIB ctor_alloc.c -o libctor.so
 *       a library whose constructor (and destructor) allocate; preload it
 *       together with libmemkit.so, in both orders.
 *   gcc -shared -fPIC -DBUILD_TLS_LIB ctor_alloc.c -o libtls.so
 *       a library with __thread variables (dynamic TLS once dlopen'ed).
 *   gcc ctor_alloc.c -o ctor_alloc
 *       the program: `ctor_alloc trivial` allocates a little and exits 0;
 *       `ctor_alloc dlopen-tls /path/libtls.so` dlopens/dlcloses that library
 *       from several threads while using its TLS.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(BUILD_CTOR_LIB)

static char *kept;
static void *kept_aligned;

/* Runs before main, possibly before libmemkit.so's own constructors. */
__attribute__((constructor(101))) static void early_ctor(void) {
    for (int round = 0; round < 50; round++) {
        void *v[40];
        for (int i = 0; i < 40; i++) {
            v[i] = malloc((size_t)(i * i * 13 + 1));
            if (!v[i]) abort();
            memset(v[i], i, (size_t)(i * i * 13 + 1));
        }
        for (int i = 0; i < 40; i += 3) {
            v[i] = realloc(v[i], (size_t)(i + 1) * 1000);
            if (!v[i]) abort();
        }
        for (int i = 0; i < 40; i++) free(v[i]);
    }
    void *c = calloc(100, 100);
    if (!c) abort();
    for (int i = 0; i < 10000; i++)
        if (((unsigned char *)c)[i]) abort();
    free(c);
    if (posix_memalign(&kept_aligned, 4096, 10000) != 0) abort();
    kept = strdup("allocated in a constructor");
    if (!kept) abort();
}

__attribute__((constructor)) static void late_ctor(void) {
    kept = realloc(kept, 100000);
    if (!kept || strcmp(kept, "allocated in a constructor") != 0) abort();
}

__attribute__((destructor)) static void dtor(void) {
    if (strcmp(kept, "allocated in a constructor") != 0) abort();
    free(kept);
    free(kept_aligned);
    void *p = malloc(77);
    free(p);
}

#elif defined(BUILD_TLS_LIB)

__thread char tls_buf[64 * 1024]; /* too big for the static TLS surplus */
__thread long tls_counter;
__thread char *tls_ptr;

long tls_touch(long v) {
    tls_counter += v;
    tls_buf[v % (long)sizeof tls_buf] = (char)v;
    if (!tls_ptr) {
        tls_ptr = malloc(100);
        if (!tls_ptr) abort();
    }
    tls_ptr[v % 100] = (char)v;
    return tls_counter;
}

void tls_release(void) {
    free(tls_ptr);
    tls_ptr = NULL;
}

#else /* the program */

typedef long (*touch_fn)(long);
typedef void (*release_fn)(void);

static const char *tls_lib;
static volatile int failed;

static void use_lib_once(long seed) {
    void *h = dlopen(tls_lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        if (!failed) fprintf(stderr, "ctor_alloc: dlopen(%s): %s\n", tls_lib, dlerror());
        failed = 1;
        return;
    }
    touch_fn touch = (touch_fn)dlsym(h, "tls_touch");
    release_fn release = (release_fn)dlsym(h, "tls_release");
    if (!touch || !release) {
        fprintf(stderr, "ctor_alloc: dlsym failed\n");
        failed = 1;
        dlclose(h);
        return;
    }
    /* The counter survives while another thread keeps the library loaded. */
    long expect = touch(0);
    for (long i = 1; i <= 10; i++) {
        expect += seed + i;
        long got = touch(seed + i);
        if (got != expect && !failed) {
            fprintf(stderr, "ctor_alloc: TLS counter is %ld, expected %ld\n", got, expect);
            failed = 1;
        }
    }
    release();
    dlclose(h);
}

static void *tls_worker(void *arg) {
    long id = (long)(intptr_t)arg;
    for (int i = 0; i < 1000; i++) {
        use_lib_once(id * 1000 + i);
        void *p = malloc((size_t)(i % 17 + 1) * 64);
        free(p);
    }
    return NULL;
}

static void *tls_short(void *arg) {
    use_lib_once((long)(intptr_t)arg);
    return NULL;
}

static int run_dlopen_tls(const char *lib) {
    tls_lib = lib;
    /* Long-running threads (whose DTVs go stale as modules come and go) and
     * short-lived ones, all loading and unloading the library. */
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, tls_worker, (void *)(intptr_t)(i + 1)) != 0) return 1;
    for (int round = 0; round < 300; round++) {
        pthread_t s[3];
        for (int i = 0; i < 3; i++)
            if (pthread_create(&s[i], NULL, tls_short, (void *)(intptr_t)(round * 3 + i)) != 0) return 1;
        use_lib_once(round);
        for (int i = 0; i < 3; i++) pthread_join(s[i], NULL);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    if (failed) return 1;
    printf("ctor_alloc: dlopen/dlclose of a TLS library from threads ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "dlopen-tls") == 0) return run_dlopen_tls(argv[2]);
    if (argc >= 2 && strcmp(argv[1], "trivial") == 0) {
        char *s = malloc(32);
        strcpy(s, "trivial");
        s = realloc(s, 4096);
        printf("ctor_alloc: %s ok\n", s);
        free(s);
        return 0;
    }
    fprintf(stderr, "usage: ctor_alloc trivial | ctor_alloc dlopen-tls LIB\n");
    return 2;
}

#endif
