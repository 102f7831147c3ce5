#ifndef FENCEGATE_NETWORK_NAMESPACE_H
#define FENCEGATE_NETWORK_NAMESPACE_H

/// Moves the calling thread into the network namespace at `path` (e.g. /run/netns/NAME).
/// Returns 0, or an errno value. Tests only: Glibc's Swift module does not expose setns(2).
int fg_enter_network_namespace(const char *path);

#endif
