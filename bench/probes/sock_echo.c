/* Probe: the ceiling of luacluster's IPC figures. Two processes on a socketpair with blocking
 * read/write and no codec, no framing, no event loop. Messages are SIZE bytes.
 *   pingpong:  the parent sends one message, the child echoes it, the parent waits for the echo
 *              and sends the next (two cross-process wake-ups a round trip); round trips/s
 *   pipelined: the parent writes batches of BATCH messages (one write() a batch), two batches
 *              in flight; the child reads everything and answers one byte per batch (as
 *              bench/ipc.lua's "pipelined" acks each batch of 1000); messages/s
 * Usage: sock_echo pingpong|pipelined SIZE SECONDS [BATCH]
 * Prints: count=N seconds=S rate=N/S */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) exit(1);
    p += w;
    n -= (size_t)w;
  }
}

static void read_all(int fd, char *p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) exit(1);
    p += r;
    n -= (size_t)r;
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: sock_echo pingpong|pipelined SIZE SECONDS [BATCH]\n");
    return 2;
  }
  int pipelined = strcmp(argv[1], "pipelined") == 0;
  size_t size = (size_t)atol(argv[2]);
  double seconds = atof(argv[3]);
  size_t batch = argc > 4 ? (size_t)atol(argv[4]) : 1000;
  if (size < 1) size = 1;
  if (batch < 1) batch = 1;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(sv[0]);
    static char buf[65536];
    size_t per_ack = size * batch, got = 0;
    for (;;) {
      ssize_t r = read(sv[1], buf, sizeof buf);
      if (r <= 0) _exit(0);
      if (!pipelined) {
        write_all(sv[1], buf, (size_t)r);
        continue;
      }
      got += (size_t)r;
      while (got >= per_ack) {
        got -= per_ack;
        write_all(sv[1], "a", 1);
      }
    }
  }
  close(sv[1]);
  int fd = sv[0];
  size_t chunk = pipelined ? size * batch : size;
  char *out = malloc(chunk), *in = malloc(chunk);
  memset(out, 'x', chunk);
  long n = 0;
  double t0 = now(), t;
  if (pipelined) {
    write_all(fd, out, chunk); /* two batches in flight */
    do {
      write_all(fd, out, chunk);
      read_all(fd, in, 1);
      n += (long)batch;
      t = now();
    } while (t - t0 < seconds);
    read_all(fd, in, 1);
    n += (long)batch;
    t = now();
  } else {
    do {
      for (int i = 0; i < 64; i++) {
        write_all(fd, out, size);
        read_all(fd, in, size);
      }
      n += 64;
      t = now();
    } while (t - t0 < seconds);
  }
  close(fd);
  waitpid(pid, NULL, 0);
  printf("count=%ld seconds=%.3f rate=%.0f\n", n, t - t0, n / (t - t0));
  return 0;
}
