/* check.h: the CHECK macro of the C test programs: on a failed condition,
 * prints "FAIL file:line: condition: message (errno N text)" on stderr and
 * exits 1. Include after <errno.h>, <stdio.h>, <stdlib.h>, <string.h>. */
#ifndef MEMKIT_TEST_CHECK_H
#define MEMKIT_TEST_CHECK_H

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, " (errno %d %s)\n", errno, strerror(errno));        \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

#endif
