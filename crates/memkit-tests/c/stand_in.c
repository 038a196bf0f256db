/* stand_in.c: a shared object that is not memkit but carries memkit's
 * version note (crates/memkit-sys/src/version.rs), so `memkit run` accepts
 * it as libmemkit.so, and preloading it changes nothing: no process leaves
 * a record. The CLI tests use it to test memkit's own behaviour, and, built
 * with another version (or none), the refusal of a mismatched library.
 *
 *   gcc -shared -fPIC -DSTAND_IN_VERSION='"0.1.0"' stand_in.c -o libstand_in.so
 *
 * Without STAND_IN_VERSION the object has no memkit note at all.
 */
#ifdef STAND_IN_VERSION
struct memkit_version_note {
    unsigned namesz, descsz, type; /* Elf64_Nhdr */
    char name[8];                  /* "memkit", NUL, padding to 4 */
    char desc[(sizeof(STAND_IN_VERSION) + 3) & ~3u];
};

__attribute__((used, section(".note.memkit.version"), aligned(4)))
static const struct memkit_version_note note = {
    sizeof("memkit"), sizeof(STAND_IN_VERSION), 1, "memkit", STAND_IN_VERSION,
};
#endif

int memkit_stand_in(void) { return 0; }
