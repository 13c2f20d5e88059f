/* core/adapter.h — everything an adapter (a source, a sink, a transform) may use from the core:
 * logging, the clock, errors, positions, config accessors, the metrics registry (an adapter's
 * own counters, e.g. the mesh's conflicts) and the audit log (od_audit_record: e.g. a conflict). The build exposes only these core
 * headers to adapter targets (CMakeLists.txt, odsync_layer): an adapter that includes any other
 * core header, another adapter's internals or the CLI does not compile.
 * Owns nothing. */
#ifndef ODSYNC_CORE_ADAPTER_H
#define ODSYNC_CORE_ADAPTER_H

#include "core/audit.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "odsync/config.h"
#include "odsync/error.h"
#include "odsync/position.h"

#endif
