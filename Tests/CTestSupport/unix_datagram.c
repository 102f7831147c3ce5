#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "test_support.h"

int fg_bind_unix_datagram(const char *path) {
    struct sockaddr_un address;
    if (strlen(path) >= sizeof(address.sun_path)) return -1;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    strcpy(address.sun_path, path);
    int descriptor = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (descriptor < 0) return -1;
    if (bind(descriptor, (struct sockaddr *)&address, sizeof(address)) != 0) {
        close(descriptor);
        return -1;
    }
    return descriptor;
}

int fg_receive_datagram(int descriptor, char *buffer, int capacity, int timeout_ms) {
    struct pollfd waiting = {.fd = descriptor, .events = POLLIN};
    int ready = poll(&waiting, 1, timeout_ms);
    if (ready <= 0) return ready;
    return (int)recv(descriptor, buffer, (size_t)capacity, 0);
}
