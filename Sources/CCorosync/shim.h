#ifndef FENCEGATE_CCOROSYNC_SHIM_H
#define FENCEGATE_CCOROSYNC_SHIM_H
#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <string.h>
#endif
