/* Probe: the ceiling of luacluster's HTTP figures. A raw libuv keep-alive
 * "Hello, World!\n" server with no Lua, in N processes that accept on one shared listening
 * socket (luacluster's `shared` mode without the runtime and the Lua call).
 * Usage: uv_hello PORT [WORKERS]   (listens on 127.0.0.1; SIGTERM/SIGINT stop it and its workers;
 * WORKERS 0: serve in this one process, for tools such as valgrind) */
#include "uv_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static uv_tcp_t server;

static void on_conn(uv_stream_t *s, int status) {
  if (status == 0) probe_serve(s->loop, s);
}

static void exit_on_signal(int sig) { (void)sig; exit(0); }

static int worker(int fd, int forked) {
  if (forked) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
  }
  probe_http_init();
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_init(loop, &server);
  if (uv_tcp_open(&server, fd) != 0 || uv_listen((uv_stream_t *)&server, 1024, on_conn) != 0) {
    fprintf(stderr, "uv_hello: cannot listen\n");
    return 1;
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: uv_hello PORT [WORKERS]\n");
    return 2;
  }
  int port = atoi(argv[1]), n = argc > 2 ? atoi(argv[2]) : 2;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0) {
    perror("uv_hello: listen");
    return 1;
  }
  pid_t kids[64];
  if (n == 0) {
    signal(SIGINT, exit_on_signal);
    signal(SIGTERM, exit_on_signal);
    return worker(fd, 0);
  }
  if (n < 1 || n > 64) n = 2;
  for (int i = 0; i < n; i++) {
    kids[i] = fork();
    if (kids[i] == 0) return worker(fd, 1);
  }
  struct sigaction act = { .sa_handler = on_signal };
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  while (!stop) pause();
  for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
  while (wait(NULL) > 0) {}
  return 0;
}
