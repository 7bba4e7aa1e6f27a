/* fuzz_replay.c: runs a fuzz target's LLVMFuzzerTestOneInput once per file, without libFuzzer,
 * so any compiler (gcc in the default build, with or without sanitizers) replays a corpus.
 * Usage: fuzz_X_replay FILE_OR_DIR...   Prints "replayed N inputs" and exits 0, or dies in the
 * input that crashes (its path is printed first). */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long count;

static void run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
  if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
  fclose(f);
  fprintf(stderr, "replay: %s\n", path);
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  count++;
}

static void run_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) { perror(path); exit(2); }
  if (!S_ISDIR(st.st_mode)) { run_file(path); return; }
  struct dirent **list;
  int n = scandir(path, &list, NULL, alphasort);
  for (int i = 0; i < n; i++) {
    if (list[i]->d_name[0] != '.') {
      char sub[4096];
      snprintf(sub, sizeof sub, "%s/%s", path, list[i]->d_name);
      run_path(sub);
    }
    free(list[i]);
  }
  free(list);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) run_path(argv[i]);
  printf("replayed %ld inputs\n", count);
  return 0;
}
