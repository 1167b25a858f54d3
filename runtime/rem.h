/* rem's C runtime: tasks, cancellation scopes and deadlines, task groups, error lists,
 * resource managers and collections, and exit stacks over a uv_loop_t the caller owns. It never includes lua.h: a C program can use it alone.
 * Functions return 0 or a negative UV_E* code, so uv_err_name() names every failure.
 */
#ifndef REM_H
#define REM_H

#define REM_VERSION "0.1.0"

#include "collection.h"
#include "errlist.h"
#include "exitstack.h"
#include "group.h"
#include "list.h"
#include "manager.h"
#include "rbuf.h"
#include "scheduler.h"
#include "scope.h"
#include "task.h"
#include "timers.h"

#endif
