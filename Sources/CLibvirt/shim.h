#ifndef FENCEGATE_CLIBVIRT_SHIM_H
#define FENCEGATE_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
/* For Fencegate's event loop for libvirt (LibvirtEventLoop): epoll, a timerfd per timer, an eventfd to wake it. */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#endif
