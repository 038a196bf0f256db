/* A leak whose allocation stack runs through a library that is unloaded
 * before exit: built twice, as libdlleak.so (-DLIB: the allocating site)
 * and as the program, which dlopens it, leaks through it and dlcloses it.
 * The report at exit must still name the library's function and file. */
#include <stdio.h>
#include <stdlib.h>

#ifdef LIB
__attribute__((noipa)) void *lib_alloc_site(size_t n) {
    return malloc(n);
}
#else
#include <dlfcn.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    void *(*site)(size_t) = (void *(*)(size_t))dlsym(h, "lib_alloc_site");
    volatile void *p = site(72);
    p = NULL;
    if (dlclose(h) != 0) return 3;
    printf("END dlclose\n");
    return 0;
}
#endif
