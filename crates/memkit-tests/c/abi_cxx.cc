// C++ allocation operators: new/delete, arrays, sized delete, aligned new,
// nothrow new, and standard containers on top of them.
// Build: g++ -O1 -g -fno-builtin -pthread -std=gnu++17 abi_cxx.cc -o abi_cxx
// Exit 0 on success; otherwise prints every failed check and exits 1.
#include <malloc.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

static int failures;
static int checks;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        checks++;                                                               \
        if (!(cond)) {                                                          \
            failures++;                                                         \
            std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                  \
            std::fputc('\n', stderr);                                           \
        }                                                                       \
    } while (0)

static bool aligned(const void *p, std::size_t a) { return (reinterpret_cast<std::uintptr_t>(p) & (a - 1)) == 0; }

struct alignas(256) Over {
    unsigned char bytes[300];
};

struct alignas(64) Line {
    int v;
    Line() : v(42) {}
};

struct Counted {
    std::string name;
    std::vector<int> data;
};

// The compiler must not see through these: keep the operators real calls.
template <typename T>
static T launder_ptr(T p) {
    asm volatile("" : "+r"(p));
    return p;
}

static void test_scalar_and_array() {
    for (std::size_t n = 1; n <= 70000; n = n * 2 + 3) {
        char *p = static_cast<char *>(::operator new(n));
        CHECK(p != nullptr && aligned(p, 16), "operator new(%zu) = %p", n, (void *)p);
        std::memset(p, 0x3c, n);
        ::operator delete(launder_ptr(p));

        char *q = static_cast<char *>(::operator new[](n));
        CHECK(q != nullptr && aligned(q, 16), "operator new[](%zu) = %p", n, (void *)q);
        std::memset(q, 0x3d, n);
        ::operator delete[](launder_ptr(q));

        // Sized delete (C++14), scalar and array.
        char *s = static_cast<char *>(::operator new(n));
        std::memset(s, 1, n);
        ::operator delete(launder_ptr(s), n);
        char *t = static_cast<char *>(::operator new[](n));
        std::memset(t, 1, n);
        ::operator delete[](launder_ptr(t), n);
    }

    int *one = new int(7);
    CHECK(*one == 7, "new int(7)");
    delete launder_ptr(one);
    int *arr = new int[1000]();
    int nz = 0;
    for (int i = 0; i < 1000; i++) nz += arr[i] != 0;
    CHECK(nz == 0, "new int[1000]() not value-initialised");
    delete[] launder_ptr(arr);

    Counted *c = new Counted[17];
    for (int i = 0; i < 17; i++) {
        c[i].name = std::string(100 + i, 'x');
        c[i].data.assign(1000, i);
    }
    delete[] launder_ptr(c);

    // new/delete memory is malloc memory here: malloc_usable_size works on it.
    void *m = ::operator new(100);
    CHECK(malloc_usable_size(m) >= 100, "malloc_usable_size(operator new(100)) = %zu", malloc_usable_size(m));
    ::operator delete(m);
}

static void test_aligned_new() {
    for (int i = 0; i < 100; i++) {
        Over *o = new Over;
        CHECK(aligned(o, 256), "new alignas(256) struct = %p", (void *)o);
        std::memset(o->bytes, i, sizeof o->bytes);
        delete launder_ptr(o);
    }
    Over *oa = new Over[9];
    CHECK(aligned(oa, 256), "new alignas(256) struct[9] = %p", (void *)oa);
    delete[] launder_ptr(oa);

    std::vector<Line> lines(1000);
    CHECK(aligned(lines.data(), 64), "vector<alignas(64)> data = %p", (void *)lines.data());
    CHECK(lines[999].v == 42, "vector<Line> constructed");

    for (std::size_t a = 16; a <= 65536; a <<= 1) {
        std::align_val_t al{a};
        void *p = ::operator new(a * 3 + 1, al);
        CHECK(p != nullptr && aligned(p, a), "operator new(%zu, align %zu) = %p", a * 3 + 1, a, p);
        std::memset(p, 0x5e, a * 3 + 1);
        ::operator delete(launder_ptr(p), al);

        void *q = ::operator new[](a + 5, al);
        CHECK(q != nullptr && aligned(q, a), "operator new[](%zu, align %zu) = %p", a + 5, a, q);
        std::memset(q, 0x5f, a + 5);
        ::operator delete[](launder_ptr(q), al);

        // Sized + aligned delete.
        void *r = ::operator new(a * 2, al);
        CHECK(aligned(r, a), "operator new(%zu, align %zu) = %p", a * 2, a, r);
        ::operator delete(launder_ptr(r), a * 2, al);
        void *s = ::operator new[](a * 2, al);
        ::operator delete[](launder_ptr(s), a * 2, al);

        // nothrow + aligned.
        void *t = ::operator new(a, al, std::nothrow);
        CHECK(t != nullptr && aligned(t, a), "operator new(%zu, align, nothrow) = %p", a, t);
        ::operator delete(launder_ptr(t), al, std::nothrow);
        void *u = ::operator new[](a, al, std::nothrow);
        CHECK(u != nullptr && aligned(u, a), "operator new[](%zu, align, nothrow) = %p", a, u);
        ::operator delete[](launder_ptr(u), al, std::nothrow);
    }

    void *page = ::operator new(10, std::align_val_t(4096));
    CHECK(aligned(page, 4096), "operator new(10, align_val_t(4096)) = %p", page);
    std::memset(page, 1, 10);
    ::operator delete(launder_ptr(page), std::align_val_t(4096));
}

static void test_nothrow() {
    char *p = new (std::nothrow) char[1000];
    CHECK(p != nullptr, "new (nothrow) char[1000]");
    std::memset(p, 2, 1000);
    delete[] launder_ptr(p);
    void *q = ::operator new(123, std::nothrow);
    CHECK(q != nullptr, "operator new(123, nothrow)");
    ::operator delete(launder_ptr(q), std::nothrow);

    // A request that cannot be satisfied: nothrow new returns nullptr.
    std::size_t huge = std::size_t(64) << 40;
    void *h = ::operator new(launder_ptr(huge), std::nothrow);
    CHECK(h == nullptr, "operator new(64 TiB, nothrow) = %p, expected nullptr", h);
    if (h) ::operator delete(h);
    void *ha = ::operator new[](launder_ptr(huge), std::nothrow);
    CHECK(ha == nullptr, "operator new[](64 TiB, nothrow) = %p, expected nullptr", ha);
    if (ha) ::operator delete[](ha);
    void *hal = ::operator new(launder_ptr(huge), std::align_val_t(4096), std::nothrow);
    CHECK(hal == nullptr, "operator new(64 TiB, align 4096, nothrow) = %p, expected nullptr", hal);
    if (hal) ::operator delete(hal, std::align_val_t(4096));
}

// The throwing forms when memory is short: std::bad_alloc, caught by the
// caller; with a new_handler installed, the handler runs and the request
// is retried (here the handler frees a reserve on its second call, then
// uninstalls itself, so the third attempt of a satisfiable size succeeds).
static int handler_calls;
static void *reserve;

static void release_reserve() {
    handler_calls++;
    if (handler_calls == 2) {
        ::operator delete(reserve);
        reserve = nullptr;
        std::set_new_handler(nullptr);
    }
}

static void test_throwing_new_when_short() {
    std::size_t huge = std::size_t(64) << 40;
    int caught = 0;
    try {
        void *p = ::operator new(launder_ptr(huge));
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        void *p = ::operator new[](launder_ptr(huge));
        ::operator delete[](p);
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        void *p = ::operator new(launder_ptr(huge), std::align_val_t(4096));
        ::operator delete(p, std::align_val_t(4096));
    } catch (const std::bad_alloc &) {
        caught++;
    }
    try {
        char *p = new char[launder_ptr(huge)];
        delete[] p;
    } catch (const std::bad_alloc &) {
        caught++;
    }
    CHECK(caught == 4, "%d of 4 throwing new of 64 TiB threw std::bad_alloc", caught);

    // A handler that gives up after two calls: the huge request still throws.
    reserve = ::operator new(1000);
    handler_calls = 0;
    std::set_new_handler(release_reserve);
    bool threw = false;
    try {
        void *p = ::operator new(launder_ptr(huge));
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw && handler_calls == 2, "handler: threw %d after %d calls (expected 1 after 2)",
          threw, handler_calls);
    CHECK(reserve == nullptr && std::get_new_handler() == nullptr, "the handler ran to the end");
}

static void test_containers_and_threads() {
    // Cross-thread delete: objects created on worker threads, destroyed on main.
    std::vector<std::unique_ptr<std::map<int, std::string>>> made(8);
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; t++) {
        ts.emplace_back([t, &made] {
            auto m = std::make_unique<std::map<int, std::string>>();
            for (int i = 0; i < 5000; i++) (*m)[i * 7 + t] = std::to_string(i) + std::string(i % 50, 'a' + t);
            made[t] = std::move(m);
        });
    }
    for (auto &t : ts) t.join();
    for (int t = 0; t < 8; t++) {
        CHECK(made[t]->size() == 5000, "map %d has %zu entries", t, made[t]->size());
        auto it = made[t]->find(49 * 7 + t);
        CHECK(it != made[t]->end() && it->second == "49" + std::string(49, 'a' + t), "map %d content", t);
    }
    made.clear();

    // thread_local objects with destructors that free memory at thread exit
    // (glibc runs them before pthread key destructors), many threads.
    for (int round = 0; round < 50; round++) {
        std::vector<std::thread> tl;
        for (int t = 0; t < 4; t++) {
            tl.emplace_back([t] {
                thread_local std::vector<std::string> v;
                thread_local std::map<int, std::unique_ptr<int[]>> m;
                for (int i = 0; i < 200; i++) {
                    v.push_back(std::string(i % 90 + 1, 'a' + t));
                    m[i].reset(new int[i + 1]);
                }
            });
        }
        for (auto &t : tl) t.join();
    }

    std::unordered_map<std::string, std::vector<double>> um;
    for (int i = 0; i < 20000; i++) um["key" + std::to_string(i)].push_back(i * 0.5);
    double sum = 0;
    for (auto &kv : um) sum += kv.second[0];
    CHECK(sum == 0.5 * (19999.0 * 20000.0 / 2), "unordered_map sum %f", sum);
}

int main() {
    test_scalar_and_array();
    test_aligned_new();
    test_nothrow();
    test_throwing_new_when_short();
    test_containers_and_threads();
    if (failures) {
        std::fprintf(stderr, "abi_cxx: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    std::printf("abi_cxx: all %d checks passed\n", checks);
    return 0;
}
