/*
 * replay_main.c: a stand-in for libFuzzer's main in builds without it (gcc, AP_FUZZ=OFF). Runs
 * every regular file of the directories (or the files) named on the command line through
 * LLVMFuzzerTestOneInput once, so the seed corpus and past crashers stay regression tests.
 * An invariant failure aborts; an empty corpus is an error, so a wrong path cannot pass.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Big enough for any corpus file; a larger one is a mistake in the corpus. */
#define REPLAY_MAX_INPUT (1024 * 1024)

static int
run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    uint8_t *buf = malloc(REPLAY_MAX_INPUT);
    if (buf == NULL) {
        fclose(f);
        return -1;
    }
    size_t n = fread(buf, 1, REPLAY_MAX_INPUT, f);
    int bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: read error or larger than %d bytes\n", path, REPLAY_MAX_INPUT);
        free(buf);
        return -1;
    }
    /* An exact-size copy, so ASan catches a read one past the input as libFuzzer would. */
    uint8_t *exact = malloc(n ? n : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int
run_path(const char *path, size_t *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (run_file(path) != 0)
            return -1;
        (*count)++;
        return 0;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        perror(path);
        return -1;
    }
    int rc = 0;
    while (rc == 0) {
        char full[4096];
        struct dirent *e = readdir(d);
        if (e == NULL)
            break;
        if (e->d_name[0] == '.')
            continue;
        int len = snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
        if (len < 0 || (size_t)len >= sizeof(full)) {
            rc = -1;
            break;
        }
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        rc = run_file(full);
        if (rc == 0)
            (*count)++;
    }
    closedir(d);
    return rc;
}

int
main(int argc, char **argv)
{
    size_t count = 0;
    /* libFuzzer always tries the empty input first; so do we. */
    static const uint8_t empty[1];
    LLVMFuzzerTestOneInput(empty, 0);
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue; /* libFuzzer flags, accepted for a uniform command line */
        if (run_path(argv[i], &count) != 0)
            return 1;
    }
    printf("replayed %zu inputs\n", count);
    return count > 0 ? 0 : 1;
}
