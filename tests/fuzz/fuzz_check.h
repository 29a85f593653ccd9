/*
 * fuzz_check.h: what the fuzz targets share: the libFuzzer entry point's prototype and CHECK,
 * an invariant that aborts (and so reports) with its text and place when it does not hold.
 */
#ifndef AP_FUZZ_CHECK_H
#define AP_FUZZ_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
