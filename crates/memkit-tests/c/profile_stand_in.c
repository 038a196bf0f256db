/* profile_stand_in.c: a stand-in for libmemkit_profile.so, for the tests
 * of what `memkit profile` does around the runtime (the output directory,
 * the environment, processes, exit statuses), not of the runtime itself.
 * Built together with stand_in.c (memkit's version note), so the CLI
 * accepts it:
 *
 *   gcc -shared -fPIC -DSTAND_IN_VERSION='"0.1.0"' stand_in.c \
 *       profile_stand_in.c -o libprofile_stand_in.so
 *
 * Each process that exits through its exit handlers writes a raw profile
 * with fixed figures to $MEMKIT_PROFILE_DIR/<pid>.json (<pid>.<n>.json
 * when that exists), through a temporary file and a rename as the runtime
 * does, and the options it was given to <same name>.options. Its one site
 * has frames in no known module. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((destructor)) static void write_profile(void) {
    const char *dir = getenv("MEMKIT_PROFILE_DIR");
    const char *options = getenv("MEMKIT_PROFILE_OPTIONS");
    if (!dir)
        return;
    char stem[4096], path[4200], tmp[4200];
    int pid = (int)getpid();
    for (int n = 0; n < 100; n++) {
        if (n)
            snprintf(stem, sizeof stem, "%s/%d.%d", dir, pid, n);
        else
            snprintf(stem, sizeof stem, "%s/%d", dir, pid);
        snprintf(path, sizeof path, "%s.json", stem);
        if (access(path, F_OK) != 0)
            break;
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = 0;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f,
            "{\"format\":\"memkit-profile-raw\",\"version\":1,\"pid\":%d,\"ppid\":%d,"
            "\"command\":[\"%s\"],\"exe\":\"%s\",\"start_unix_ns\":1000,"
            "\"duration_ns\":3000000,\"sample_bytes\":0,\"object_unit\":1,\"end\":\"exit\","
            "\"totals\":{\"allocs\":3,\"bytes\":300,\"frees\":2,\"temporary_allocs\":1,"
            "\"peak_bytes\":200,\"peak_allocs\":2,\"peak_at_ns\":1000000,\"inuse_bytes\":100,"
            "\"inuse_allocs\":1,\"inherited_frees\":0},\"modules\":[],"
            "\"sites\":[{\"frames\":[4660,4661],\"alloc_objects\":3,\"alloc_bytes\":300,"
            "\"inuse_objects\":1,\"inuse_bytes\":100,\"peak_objects\":2,\"peak_bytes\":200,"
            "\"temporary\":1}],"
            "\"timeline\":[{\"t_ns\":1000000,\"inuse_bytes\":200,\"rss_bytes\":4096}],"
            "\"histogram\":[{\"max_size\":128,\"allocs\":3,\"bytes\":300}],"
            "\"overhead\":{\"stack_bytes\":0,\"site_bytes\":0,\"header_bytes_at_peak\":0,"
            "\"peak_rss_bytes\":4096}}\n",
            pid, (int)getppid(), exe, exe);
    fclose(f);
    rename(tmp, path);
    snprintf(path, sizeof path, "%s.options", stem);
    f = fopen(path, "w");
    if (f) {
        fputs(options ? options : "(unset)", f);
        fclose(f);
    }
}
