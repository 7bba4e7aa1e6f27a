/* Probe: the ceiling of luacluster's `dispatch` mode. A master accepts each connection on a
 * libuv TCP server and passes it with uv_write2 over an IPC pipe to one of N worker processes
 * in turn (round robin); the workers serve it with the same raw libuv hello
 * server as uv_hello (no Lua anywhere).
 * Usage: uv_dispatch PORT [WORKERS]   (SIGTERM/SIGINT stop it; workers exit with the master) */
#include "uv_http.h"

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAXW 64

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_pipe_t pipes[MAXW];
static uv_process_t procs[MAXW];
static int nworkers, next;
static uv_signal_t sigterm, sigint;

static void free_handle(uv_handle_t *h) { free(h); }
static void passed(uv_write_t *req, int status) {
  (void)status;
  uv_close((uv_handle_t *)req->data, free_handle); /* the master's copy of the connection */
  free(req);
}

static void on_conn(uv_stream_t *s, int status) {
  if (status != 0) return;
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(loop, c);
  if (uv_accept(s, (uv_stream_t *)c) != 0) {
    uv_close((uv_handle_t *)c, free_handle);
    return;
  }
  uv_write_t *req = malloc(sizeof *req);
  req->data = c;
  static char one = 'c';
  uv_buf_t b = uv_buf_init(&one, 1);
  int w = next++ % nworkers;
  if (uv_write2(req, (uv_stream_t *)&pipes[w], &b, 1, (uv_stream_t *)c, passed) != 0) {
    uv_close((uv_handle_t *)c, free_handle);
    free(req);
  }
}

static void on_signal(uv_signal_t *s, int sig) {
  (void)sig;
  for (int i = 0; i < nworkers; i++) uv_process_kill(&procs[i], SIGTERM);
  uv_stop(s->loop);
}

/* ---- worker ---- */
static uv_pipe_t chan;
static char rbuf[256];
static void w_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) { (void)h; (void)sz; *b = uv_buf_init(rbuf, sizeof rbuf); }
static void w_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n < 0) exit(0); /* the master is gone */
  while (uv_pipe_pending_count((uv_pipe_t *)s) > 0) probe_serve(loop, s);
}

static int worker(void) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  probe_http_init();
  uv_pipe_init(loop, &chan, 1);
  uv_pipe_open(&chan, 3);
  uv_read_start((uv_stream_t *)&chan, w_alloc, w_read);
  return uv_run(loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv) {
  loop = uv_default_loop();
  if (argc > 1 && strcmp(argv[1], "--worker") == 0) return worker();
  if (argc < 2) {
    fprintf(stderr, "usage: uv_dispatch PORT [WORKERS]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  nworkers = argc > 2 ? atoi(argv[2]) : 2;
  if (nworkers < 1 || nworkers > MAXW) nworkers = 2;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", port, &sa);
  uv_tcp_init(loop, &server);
  if (uv_tcp_bind(&server, (struct sockaddr *)&sa, 0) != 0 || uv_listen((uv_stream_t *)&server, 1024, on_conn) != 0) {
    fprintf(stderr, "uv_dispatch: cannot listen on %d\n", port);
    return 1;
  }
  char exe[4096];
  size_t len = sizeof exe;
  uv_exepath(exe, &len);
  char *args[] = { exe, "--worker", NULL };
  for (int i = 0; i < nworkers; i++) {
    uv_pipe_init(loop, &pipes[i], 1);
    uv_stdio_container_t stdio[4];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD; stdio[1].data.fd = 1;
    stdio[2].flags = UV_INHERIT_FD; stdio[2].data.fd = 2;
    stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
    stdio[3].data.stream = (uv_stream_t *)&pipes[i];
    uv_process_options_t o = { .file = exe, .args = args, .stdio = stdio, .stdio_count = 4 };
    if (uv_spawn(loop, &procs[i], &o) != 0) {
      fprintf(stderr, "uv_dispatch: cannot start a worker\n");
      return 1;
    }
  }
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
