/* The ceiling of libmicrohttpd on this machine, for bench.py's HTTP scenario: Fencegate's server settings
 * (MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, a pool of 2 threads, bound to 127.0.0.1) answering every
 * request with the same 120-byte JSON body, a response made per request as a real server makes it.
 *   mhd-ceiling PORT    (0: any free port) prints http://127.0.0.1:PORT when it serves; stops on SIGTERM/SIGINT.
 * Build: cc -O2 -o mhd-ceiling mhd-ceiling.c -lmicrohttpd */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char body[] = "{\"name\":\"node1\",\"uuid\":\"00000000-0000-4000-8000-000000000001\","
                           "\"state\":\"running\",\"host\":\"localhost\",\"note\":\"fixed body.\"}";

static enum MHD_Result answer(void *context, struct MHD_Connection *connection, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)context, (void)url, (void)method, (void)version, (void)upload;
    static int headers_seen;
    if (*state == NULL) { /* the first call has the headers only: answering now would close the connection */
        *state = &headers_seen;
        return MHD_YES;
    }
    if (*upload_size != 0) { /* a body (none expected): read and drop it */
        *upload_size = 0;
        return MHD_YES;
    }
    struct MHD_Response *response =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (response == NULL) return MHD_NO;
    MHD_add_response_header(response, "Content-Type", "application/json");
    enum MHD_Result queued = MHD_queue_response(connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return queued;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT (0: any free port)\n", argv[0]);
        return 2;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sigset_t stops;  /* blocked before the pool starts, so only sigwait below takes them */
    sigemptyset(&stops);
    sigaddset(&stops, SIGTERM);
    sigaddset(&stops, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stops, NULL);
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, answer, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)2, MHD_OPTION_END);
    if (daemon == NULL) {
        fprintf(stderr, "mhd-ceiling: cannot listen on 127.0.0.1:%s\n", argv[1]);
        return 1;
    }
    printf("http://127.0.0.1:%u\n", (unsigned)MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT)->port);
    fflush(stdout);
    int stop;
    sigwait(&stops, &stop);
    MHD_stop_daemon(daemon);
    return 0;
}
