#ifndef FENCEGATE_TEST_SUPPORT_H
#define FENCEGATE_TEST_SUPPORT_H

/// Moves the calling thread into the network namespace at `path` (e.g. /run/netns/NAME).
/// Returns 0, or an errno value. Tests only: Glibc's Swift module does not expose setns(2).
int fg_enter_network_namespace(const char *path);

#include <sys/types.h>

/// Starts `path` with `argv` and `envp` (NULL-terminated), standard input from `stdin_path` (NULL:
/// /dev/null), output and errors into the given files (created 0600), in `directory` (NULL: the current one),
/// with every other descriptor closed in the child. Returns 0 and sets `*pid`, or an errno value. Tests only:
/// Foundation's Process.run() reads past a buffer while listing /proc/self/fd and crashed under load.
int fg_spawn(const char *path, char *const argv[], char *const envp[], const char *directory,
             const char *stdin_path, const char *stdout_path, const char *stderr_path, pid_t *pid);

/// Waits for `pid`: its exit status, the signal that ended it, or -1.
int fg_wait(pid_t pid);

/// Binds a Unix datagram socket at `path` (as systemd's notification socket is). Returns the descriptor, or -1.
int fg_bind_unix_datagram(const char *path);

/// Receives one datagram into `buffer` (at most `capacity` bytes), waiting at most `timeout_ms`.
/// Returns its length, 0 on timeout, or -1.
int fg_receive_datagram(int descriptor, char *buffer, int capacity, int timeout_ms);

#endif
