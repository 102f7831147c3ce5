#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include "test_support.h"

int fg_enter_network_namespace(const char *path) {
    int descriptor = open(path, O_RDONLY | O_CLOEXEC);
    if (descriptor < 0) return errno;
    int result = setns(descriptor, CLONE_NEWNET) == 0 ? 0 : errno;
    close(descriptor);
    return result;
}
