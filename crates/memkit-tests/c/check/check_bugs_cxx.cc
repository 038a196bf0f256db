// C++ one-bug programs for `memkit check` (crates/memkit-cli/tests/check.rs),
// run like check_bugs.c:
//
//   check_bugs_cxx CASE       the case with its bug
//   check_bugs_cxx ok-CASE    the correct twin (no report at all)
//   check_bugs_cxx list       the case names, one a line
//
// Every case prints `END CASE` when it returns to main. Sites are extern "C"
// (plain names in the report's stacks) and noipa, as in check_bugs.c.
// Compile with -fno-builtin and -pthread.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#define SITE extern "C" __attribute__((noipa))
#define NOTAIL() __asm__ volatile("" ::: "memory")

static void die(const char *what) {
    std::fprintf(stderr, "check_bugs_cxx: %s\n", what);
    std::exit(100);
}

SITE void scrub_stack(void) {
    volatile char buf[64 << 10];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
    NOTAIL();
}

// ---- alloc-dealloc-mismatch ---------------------------------------------

SITE char *alloc_site_malloc(size_t n) {
    char *p = static_cast<char *>(std::malloc(n));
    if (!p) die("malloc");
    NOTAIL();
    return p;
}

SITE char *alloc_site_new(void) {
    char *p = new char;
    NOTAIL();
    return p;
}

SITE char *alloc_site_new_array(size_t n) {
    char *p = new char[n];
    NOTAIL();
    return p;
}

SITE void bug_site_delete(char *p) {
    delete p;
    NOTAIL();
}

SITE void bug_site_delete_array(char *p) {
    delete[] p;
    NOTAIL();
}

SITE void bug_site_free(char *p) {
    std::free(p);
    NOTAIL();
}

static void case_malloc_delete(bool bug) {
    char *p = alloc_site_malloc(16);
    if (bug)
        bug_site_delete(p);
    else
        bug_site_free(p);
}

static void case_new_free(bool bug) {
    char *p = alloc_site_new();
    if (bug)
        bug_site_free(p);
    else
        bug_site_delete(p);
}

static void case_new_array_delete(bool bug) {
    char *p = alloc_site_new_array(24);
    if (bug)
        bug_site_delete(p);
    else
        bug_site_delete_array(p);
}

// An array of objects with a destructor: new[] keeps their count in
// front of them; `delete` of it frees the address past the count.
struct WithDtor {
    int v[4];
    ~WithDtor();
};
WithDtor::~WithDtor() { __asm__ volatile("" ::: "memory"); }

SITE WithDtor *alloc_site_new_array_dtor(void) {
    WithDtor *p = new WithDtor[3];
    NOTAIL();
    return p;
}

SITE void bug_site_delete_dtor(WithDtor *p) {
    delete p;
    NOTAIL();
}

SITE void bug_site_delete_array_dtor(WithDtor *p) {
    delete[] p;
    NOTAIL();
}

static void case_new_array_dtor_delete(bool bug) {
    WithDtor *p = alloc_site_new_array_dtor();
    if (bug)
        bug_site_delete_dtor(p);
    else
        bug_site_delete_array_dtor(p);
}

static void case_new_delete_array(bool bug) {
    char *p = alloc_site_new();
    if (bug)
        bug_site_delete_array(p);
    else
        bug_site_delete(p);
}

// An align_val_t new must be freed by an align_val_t delete, a plain new
// by a plain delete ([new.delete.single]).
SITE void *alloc_site_new_aligned(void) {
    void *p = ::operator new(40, std::align_val_t(64));
    NOTAIL();
    return p;
}

SITE void bug_site_delete_plain(void *p) {
    ::operator delete(p);
    NOTAIL();
}

SITE void bug_site_delete_aligned(void *p) {
    ::operator delete(p, std::align_val_t(64));
    NOTAIL();
}

static void case_aligned_new_delete(bool bug) {
    void *p = alloc_site_new_aligned();
    if ((uintptr_t)p % 64) die("operator new(align_val_t): misaligned");
    if (bug)
        bug_site_delete_plain(p);
    else
        bug_site_delete_aligned(p);
}

static void case_new_aligned_delete(bool bug) {
    char *p = alloc_site_new();
    if (bug)
        bug_site_delete_aligned(p);
    else
        bug_site_delete_plain(p);
}

// ---- new-delete-type-mismatch: a sized delete naming another size --------

struct Base {
    long a;
};
struct Derived : Base {
    long b[7];
};

SITE Base *alloc_site_new_derived(void) {
    Base *p = new Derived();
    NOTAIL();
    return p;
}

// No virtual destructor: `delete` of a Base* frees 8 bytes of a 64-byte
// object (sized deallocation, GCC's default from C++14 on).
SITE void bug_site_delete_base(Base *p, bool bug) {
    if (bug)
        delete p;
    else
        delete static_cast<Derived *>(p);
    NOTAIL();
}

static void case_sized_delete(bool bug) { bug_site_delete_base(alloc_site_new_derived(), bug); }

SITE void bug_site_delete_array_sized(char *p, bool bug) {
    ::operator delete[](p, bug ? 20 : 10);
    NOTAIL();
}

static void case_sized_delete_array(bool bug) {
    bug_site_delete_array_sized(alloc_site_new_array(10), bug);
}

// ---- allocation-size-too-big through new ----------------------------------

static volatile size_t huge = (size_t)1 << 45;
static volatile size_t fine = (size_t)1 << 20;

// A throwing new of 2^45 bytes: a report, then std::bad_alloc.
SITE void bug_site_new_too_big(bool bug) {
    try {
        void *p = ::operator new(bug ? huge : fine);
        std::memset(p, 1, fine);
        ::operator delete(p);
        std::printf("ALLOCATED\n");
    } catch (const std::bad_alloc &) {
        std::printf("CAUGHT\n");
    }
    NOTAIL();
}

static void case_new_too_big(bool bug) { bug_site_new_too_big(bug); }

SITE void bug_site_new_array_too_big(bool bug) {
    try {
        char *p = new char[bug ? huge : fine];
        p[fine - 1] = 1;
        delete[] p;
        std::printf("ALLOCATED\n");
    } catch (const std::bad_alloc &) {
        std::printf("CAUGHT\n");
    }
    NOTAIL();
}

static void case_new_array_too_big(bool bug) { bug_site_new_array_too_big(bug); }

// A nothrow new of 2^45 bytes: a report, and null.
SITE void bug_site_nothrow_too_big(bool bug) {
    char *p = new (std::nothrow) char[bug ? huge : fine];
    std::printf("NULL %d\n", p == nullptr);
    delete[] p;
    NOTAIL();
}

static void case_nothrow_too_big(bool bug) { bug_site_nothrow_too_big(bug); }

static int handler_calls;

static void uninstall_handler() {
    handler_calls++;
    std::set_new_handler(nullptr);
}

// A throwing new that fails calls the new_handler, retries, and throws
// once there is no handler: HANDLER 1 and CAUGHT.
SITE void bug_site_new_handler(bool bug) {
    handler_calls = 0;
    std::set_new_handler(uninstall_handler);
    try {
        char *p = new char[bug ? huge : fine];
        delete[] p;
        std::printf("ALLOCATED\n");
    } catch (const std::bad_alloc &) {
        std::printf("CAUGHT\n");
    }
    std::set_new_handler(nullptr);
    std::printf("HANDLER %d\n", handler_calls);
    NOTAIL();
}

static void case_new_handler(bool bug) { bug_site_new_handler(bug); }

// ---- leaks ------------------------------------------------------------------

struct Pair {
    Pair *other;
    std::uint64_t pad[5];
};

SITE Pair *alloc_site_new_leak(void) {
    Pair *p = new Pair();
    NOTAIL();
    return p;
}

// A leaked object owning another one: direct 48, indirect 48.
static void case_leak_new(bool bug) {
    Pair *p = alloc_site_new_leak();
    p->other = alloc_site_new_leak();
    if (!bug) {
        delete p->other;
        delete p;
    }
}

// ---- correct code only ------------------------------------------------------

struct alignas(64) Wide {
    char bytes[64];
};

// The library at work: strings, containers, exceptions, aligned, sized
// and nothrow forms of new and delete. Its bug variant does not exist.
static void case_stl(bool) {
    std::vector<std::string> words;
    for (int i = 0; i < 2000; i++) words.push_back("word number " + std::to_string(i));
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < words.size(); i++) index[words[i]] = i;
    if (index.size() != 2000 || index["word number 1999"] != 1999) die("map");
    std::string joined;
    for (const auto &w : words) joined += w.substr(0, 4);
    if (joined.size() != 8000) die("string");
    try {
        throw std::runtime_error(std::string(100, 'x'));
    } catch (const std::runtime_error &e) {
        if (std::strlen(e.what()) != 100) die("exception");
    }
    Wide *w = new Wide[3];
    if (reinterpret_cast<std::uintptr_t>(w) % 64) die("aligned new");
    delete[] w;
    Wide *one = new Wide;
    delete one;
    char *n = new (std::nothrow) char[10];
    delete[] n;
    auto *v = new std::vector<int>(1000, 7);
    v->resize(100000);
    delete v;
    std::printf("STL %zu\n", words.size());
}

// -----------------------------------------------------------------------------

static const struct {
    const char *name;
    void (*run)(bool bug);
} cases[] = {
    {"malloc-delete", case_malloc_delete},
    {"new-free", case_new_free},
    {"new-array-delete", case_new_array_delete},
    {"new-array-dtor-delete", case_new_array_dtor_delete},
    {"new-delete-array", case_new_delete_array},
    {"aligned-new-delete", case_aligned_new_delete},
    {"new-aligned-delete", case_new_aligned_delete},
    {"sized-delete", case_sized_delete},
    {"sized-delete-array", case_sized_delete_array},
    {"new-too-big", case_new_too_big},
    {"new-array-too-big", case_new_array_too_big},
    {"nothrow-too-big", case_nothrow_too_big},
    {"new-handler", case_new_handler},
    {"leak-new", case_leak_new},
    {"stl", case_stl},
};

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: check_bugs_cxx [ok-]CASE | check_bugs_cxx list\n");
        return 2;
    }
    const char *name = argv[1];
    if (std::strcmp(name, "list") == 0) {
        for (const auto &c : cases) std::printf("%s\n", c.name);
        return 0;
    }
    bool bug = std::strncmp(name, "ok-", 3) != 0;
    const char *base = bug ? name : name + 3;
    for (const auto &c : cases) {
        if (std::strcmp(c.name, base) == 0) {
            c.run(bug);
            scrub_stack();
            std::printf("END %s\n", name);
            return 0;
        }
    }
    std::fprintf(stderr, "check_bugs_cxx: unknown case %s (try: check_bugs_cxx list)\n", name);
    return 2;
}
