#ifndef FENCEGATE_CMICROHTTPD_SHIM_H
#define FENCEGATE_CMICROHTTPD_SHIM_H
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <microhttpd.h>

/// Leaves the URL and query arguments as sent: the router decodes each path segment on its own, so an
/// encoded "/" or NUL cannot change which route or domain a request names.
static size_t fg_mhd_unescape_none(void *cls, struct MHD_Connection *connection, char *text) {
    (void)cls;
    (void)connection;
    return strlen(text);
}

/// MHD_start_daemon is variadic, which Swift cannot call: this fixes the option list we use.
/// bind_address may be NULL (then all addresses on port); tls_cert/tls_key NULL for plain HTTP.
static inline struct MHD_Daemon *fg_mhd_start(
    unsigned int flags, uint16_t port,
    MHD_AccessHandlerCallback handler, void *handler_cls,
    MHD_RequestCompletedCallback completed, void *completed_cls,
    MHD_NotifyConnectionCallback notify_connection, void *notify_connection_cls,
    MHD_AcceptPolicyCallback accept_policy, void *accept_policy_cls,
    const struct sockaddr *bind_address,
    unsigned int connection_limit, unsigned int per_address_limit, unsigned int connection_timeout_seconds,
    size_t memory_limit, unsigned int thread_pool_size, const char *tls_cert, const char *tls_key)
{
    struct MHD_OptionItem options[13];
    int count = 0;
    options[count++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, completed_cls };
    options[count++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)notify_connection, notify_connection_cls };
    options[count++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_LIMIT, (intptr_t)connection_limit, NULL };
    if (per_address_limit > 0)
        options[count++] = (struct MHD_OptionItem){ MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)per_address_limit, NULL };
    options[count++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)connection_timeout_seconds, NULL };
    options[count++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)memory_limit, NULL };
    options[count++] = (struct MHD_OptionItem){ MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)fg_mhd_unescape_none, NULL };
    if (bind_address != NULL)
        options[count++] = (struct MHD_OptionItem){ MHD_OPTION_SOCK_ADDR, 0, (void *)bind_address };
    if (thread_pool_size > 1)
        options[count++] = (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)thread_pool_size, NULL };
    if (tls_cert != NULL && tls_key != NULL) {
        options[count++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)tls_cert };
        options[count++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)tls_key };
    }
    options[count] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
    return MHD_start_daemon(flags, port, accept_policy, accept_policy_cls, handler, handler_cls,
                            MHD_OPTION_ARRAY, options, MHD_OPTION_END);
}

/// MHD_Result and MHD_ValueKind are closed enums; these spell the values we return and pass.
static inline enum MHD_Result fg_mhd_yes(void) { return MHD_YES; }
static inline enum MHD_Result fg_mhd_no(void) { return MHD_NO; }

/// Every header (kind MHD_HEADER_KIND) or query argument (MHD_GET_ARGUMENT_KIND), one call each.
static inline int fg_mhd_headers(struct MHD_Connection *connection, MHD_KeyValueIterator iterator, void *cls)
{
    return MHD_get_connection_values(connection, MHD_HEADER_KIND, iterator, cls);
}
static inline int fg_mhd_query_arguments(struct MHD_Connection *connection, MHD_KeyValueIterator iterator, void *cls)
{
    return MHD_get_connection_values(connection, MHD_GET_ARGUMENT_KIND, iterator, cls);
}

/// One request header's value, or NULL (MHD_HEADER_KIND is a closed-enum value).
static inline const char *fg_mhd_header(struct MHD_Connection *connection, const char *name)
{
    return MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
}

/// A response that owns a copy of the body (MHD_RESPMEM_MUST_COPY is a closed-enum value).
static inline struct MHD_Response *fg_mhd_response(const void *body, size_t size)
{
    return MHD_create_response_from_buffer(size, (void *)body, MHD_RESPMEM_MUST_COPY);
}

/// The peer's address (a union member Swift cannot reach without the union type).
static inline const struct sockaddr *fg_mhd_client_address(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return info != NULL ? info->client_addr : NULL;
}

/// The connection's socket, or -1.
static inline int fg_mhd_connection_socket(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info != NULL ? info->connect_fd : -1;
}

/// Whether a connection notification says the connection is about to be closed (a closed-enum value).
static inline bool fg_mhd_is_closing(enum MHD_ConnectionNotificationCode code)
{
    return code == MHD_CONNECTION_NOTIFY_CLOSED;
}

/// Whether a connection notification says the connection has just been accepted (a closed-enum value).
static inline bool fg_mhd_is_started(enum MHD_ConnectionNotificationCode code)
{
    return code == MHD_CONNECTION_NOTIFY_STARTED;
}

/// The port the daemon is bound to (useful after binding port 0).
static inline uint16_t fg_mhd_bound_port(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info != NULL ? info->port : 0;
}

/// The number of open connections.
static inline unsigned int fg_mhd_connection_count(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info != NULL ? info->num_connections : 0;
}
#endif
