/* rem.Manager's two halves: the plain managers (manager_plain.c: their state is their
 * metatable, their operations run inline) and the collections with the children they hold
 * (manager.c: a state machine of runtime/collection.c per instance). Private to them. */
#ifndef REM_LMANAGER_H
#define REM_LMANAGER_H

#include "internal.h"

/* What a class says it is (its raw field __rem_kind). */
enum { REM_KIND_PLAIN, REM_KIND_COLLECTION };

/* A plain manager's state, told by its metatable: its class when idle, else one of the
 * class's role tables. */
enum {
  REM_ROLE_IDLE,
  REM_ROLE_ACQUIRING,
  REM_ROLE_ACQUIRED,
  REM_ROLE_RELEASING,
  REM_ROLE_HELD,       /* held by a rem.Collection: manager.c's machine keeps the state */
  REM_ROLE_COUNT
};

/* Who called a release, for its result and its checks. */
enum { REM_CALLER_RELEASE = 2, REM_CALLER_EXIT, REM_CALLER_CLOSE };

/* The kind of the manager at `idx` (any state), or -1 when it is not one. */
int rem__manager_kind(lua_State *L, int idx);
/* The role of the plain manager at `idx`, or -1 when it is not a plain manager. */
int rem__manager_role(lua_State *L, int idx);
/* Gives the plain manager at `idx` the metatable of `role`. */
void rem__manager_set_role(lua_State *L, int idx, int role);
/* The task that runs an operation of class `cls`'s `method`: the caller's. Raises when
 * there is none ("rem.Manager:enter: not inside a task ..."). */
rem_ltask *rem__manager_task(lua_State *L, const char *cls, const char *method);
/* Makes the error on top fit to travel: nil and false become an rem.Error ("<cls>:<what>
 * raised nil"): an exit must always see an error when something failed. */
void rem__manager_fit_error(lua_State *L, const char *cls, const char *what);
/* "not acquired", "being acquired", ... for messages. */
const char *rem__role_name(int role);

/* manager.c: the operations of a collection (or the "bad self" error for a value that is
 * no manager), self at 1, for the methods of manager_plain.c. */
int rem__collection_acquire(lua_State *L, const char *method);
int rem__collection_release(lua_State *L, int caller, const char *method, int required);

/* manager_plain.c: sets the methods every manager class has (enter, exit, __close, ...)
 * into the table on top. */
void rem__manager_setfuncs(lua_State *L, rem_state *st);
/* constructor(cls) -> function(...) making an instance of cls and calling its init(...). */
int rem__manager_constructor(lua_State *L);

#endif
