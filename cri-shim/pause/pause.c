// berth's pause process: PID 1 of every pod sandbox. It holds the pod's namespaces open,
// reaps orphans re-parented to it (the pod shares its PID namespace), and exits cleanly on
// SIGINT/SIGTERM so StopPodSandbox need not wait for a SIGKILL timeout.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  int saved = errno;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("berth-pause 1\n");
    return 0;
  }
  if (getpid() != 1) fprintf(stderr, "berth-pause: warning: not PID 1\n");
  struct sigaction stop = {0}, child = {0};
  stop.sa_handler = on_stop;
  child.sa_handler = on_child;
  child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 || sigaction(SIGCHLD, &child, NULL) < 0) {
    perror("berth-pause: sigaction");
    return 1;
  }
  for (;;) pause();
}
