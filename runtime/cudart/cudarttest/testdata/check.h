/*
 * check.h: the checks of the C test programs. CHECK prints "ok" or a FAIL
 * line with the place and a message, and counts the failures; a program
 * exits non-zero when failures is not zero.
 */
#ifndef XGPU_TEST_CHECK_H
#define XGPU_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                    \
  do {                                                      \
    if (cond) {                                             \
      printf("ok   %s\n", #cond);                           \
    } else {                                                \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      printf(__VA_ARGS__);                                  \
      printf("\n");                                         \
      failures++;                                           \
    }                                                       \
  } while (0)

#endif /* XGPU_TEST_CHECK_H */
