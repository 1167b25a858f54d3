/* rem.fs: the path functions (stat, remove, rename, mkdir) and the table that holds them
 * and rem.fs.open (file.c).
 *
 * Each call is one libuv fs request (two for remove of a directory) in a malloc'd pathreq
 * that the waiting task frees when it resumes; if the task is cancelled, the request's
 * callback frees it instead (see fsreq.c). Failures raise rem.Error with libuv's code and
 * a message naming the function and the path.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

enum { K_STAT, K_REMOVE, K_RMDIR, K_RENAME, K_MKDIR };

typedef struct pathreq {
  rem_fsreq fr;      /* first: the callback finds the pathreq from its request */
  int kind;
  const char *fname; /* the function, for its error */
  int status;        /* 0 or UV_E* */
  int first_err;     /* remove: unlink's failure, when rmdir was tried next */
  uv_stat_t sb;      /* K_STAT's result */
  char path[];
} pathreq;

static void on_path(uv_fs_t *req) {
  pathreq *p = (pathreq *)req->data;
  int r = (int)req->result;
  if (p->kind == K_STAT && r == 0) p->sb = req->statbuf;
  uv_fs_req_cleanup(req);
  int waited = rem__fsreq_waited(&p->fr);
  if (p->kind == K_REMOVE && (r == UV_EISDIR || r == UV_EPERM) && waited) {
    /* As os.remove: a directory is removed with rmdir (unlink says EISDIR on Linux, EPERM
     * elsewhere). */
    p->kind = K_RMDIR;
    p->first_err = r;
    if (uv_fs_rmdir(p->fr.loop, req, p->path, on_path) == 0) return;
  }
  if (p->kind == K_RMDIR && r == UV_ENOTDIR) r = p->first_err;  /* it was not a directory */
  p->status = r < 0 ? r : 0;
  if (waited) {
    rem__fsreq_wake(&p->fr);
    return;
  }
  rem__fsreq_release(&p->fr);  /* abandoned: nothing to undo, only memory to free */
  free(p);
}

static const char *check_path(lua_State *L, int arg, const char *fname) {
  if (lua_type(L, arg) != LUA_TSTRING) rem__argerror(L, arg, fname, "string");
  size_t len;
  const char *path = lua_tolstring(L, arg, &len);
  if (strlen(path) != len)
    luaL_error(L, "%s: bad argument #%d (path contains a zero byte)", fname, arg);
  return path;
}

static pathreq *new_req(lua_State *L, const char *path, int kind, const char *fname) {
  size_t len = strlen(path);
  pathreq *p = malloc(sizeof *p + len + 1);
  if (!p) rem__fs_error(L, UV_ENOMEM, fname, path);
  memset(p, 0, sizeof *p);
  rem__fsreq_init(&p->fr, rem__state(L), NULL);
  p->kind = kind;
  p->fname = fname;
  memcpy(p->path, path, len + 1);
  return p;
}

/* The continuation's common start: the pathreq is the ctx. Raises a cancellation (the
 * callback frees the pathreq then), else frees it and raises its failure, if any. */
static void finish_req(lua_State *L, lua_KContext ctx, uv_stat_t *sb) {
  rem__resumed(L);
  pathreq *p = (pathreq *)ctx;
  int rc = p->status;
  const char *fname = p->fname;
  if (sb) *sb = p->sb;
  free(p);
  if (!rc) return;
  if (strcmp(fname, "rem.fs.rename") == 0) {
    rem__push_error(L, uv_err_name(rc), "%s: %s -> %s: %s", fname, lua_tostring(L, 1),
                    lua_tostring(L, 2), uv_strerror(rc));
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "path");
    lua_error(L);
  }
  rem__fs_error(L, rc, fname, lua_tostring(L, 1));
}

/* Submits with `rc` the result of the uv_fs_* call, then suspends until on_path. */
static int await_req(lua_State *L, rem_ltask *t, pathreq *p, int rc, const char *fname,
                     lua_KFunction k) {
  if (rc) {
    free(p);
    return rem__fs_error(L, rc, fname, lua_tostring(L, 1));
  }
  return rem__fsreq_await(L, &p->fr, t, 1, (lua_KContext)p, k);
}

static rem_ltask *enter(lua_State *L, const char *fname) {
  rem_ltask *t = rem__need_task(L, fname);
  rem__check_cancel(L, t);
  return t;
}

/* ---- stat ---------------------------------------------------------------------------- */

static const char *type_name(uint64_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISLNK(mode)) return "link";
  if (S_ISFIFO(mode)) return "fifo";
  if (S_ISSOCK(mode)) return "socket";
  if (S_ISCHR(mode)) return "char";
  if (S_ISBLK(mode)) return "block";
  return "unknown";
}

static void set_time(lua_State *L, const char *name, uv_timespec_t ts) {
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  lua_setfield(L, -2, name);
}

static void set_int(lua_State *L, const char *name, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, name);
}

static int stat_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  uv_stat_t sb;
  finish_req(L, ctx, &sb);
  lua_createtable(L, 0, 16);
  lua_pushstring(L, type_name(sb.st_mode));
  lua_setfield(L, -2, "type");
  set_int(L, "mode", sb.st_mode & 07777);
  set_int(L, "size", sb.st_size);
  set_int(L, "nlink", sb.st_nlink);
  set_int(L, "uid", sb.st_uid);
  set_int(L, "gid", sb.st_gid);
  set_int(L, "ino", sb.st_ino);
  set_int(L, "dev", sb.st_dev);
  set_int(L, "rdev", sb.st_rdev);
  set_int(L, "blksize", sb.st_blksize);
  set_int(L, "blocks", sb.st_blocks);
  set_time(L, "atime", sb.st_atim);
  set_time(L, "mtime", sb.st_mtim);
  set_time(L, "ctime", sb.st_ctim);
  set_time(L, "birthtime", sb.st_birthtim);
  return 1;
}

/* rem.fs.stat(path) -> {type=, mode=, size=, mtime=, ...}; follows symbolic links. */
static int l_stat(lua_State *L) {
  const char *path = check_path(L, 1, "rem.fs.stat");
  rem_ltask *t = enter(L, "rem.fs.stat");
  lua_settop(L, 1);
  pathreq *p = new_req(L, path, K_STAT, "rem.fs.stat");
  int rc = uv_fs_stat(p->fr.loop, &p->fr.req, path, on_path);
  return await_req(L, t, p, rc, "rem.fs.stat", stat_k);
}

/* ---- remove, rename, mkdir ----------------------------------------------------------- */

static int true_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  finish_req(L, ctx, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* rem.fs.remove(path) -> true: removes a file, or an empty directory (as os.remove). */
static int l_remove(lua_State *L) {
  const char *path = check_path(L, 1, "rem.fs.remove");
  rem_ltask *t = enter(L, "rem.fs.remove");
  lua_settop(L, 1);
  pathreq *p = new_req(L, path, K_REMOVE, "rem.fs.remove");
  int rc = uv_fs_unlink(p->fr.loop, &p->fr.req, path, on_path);
  return await_req(L, t, p, rc, "rem.fs.remove", true_k);
}

/* rem.fs.rename(from, to) -> true. */
static int l_rename(lua_State *L) {
  const char *from = check_path(L, 1, "rem.fs.rename");
  const char *to = check_path(L, 2, "rem.fs.rename");
  rem_ltask *t = enter(L, "rem.fs.rename");
  lua_settop(L, 2);
  pathreq *p = new_req(L, from, K_RENAME, "rem.fs.rename");
  int rc = uv_fs_rename(p->fr.loop, &p->fr.req, from, to, on_path);
  return await_req(L, t, p, rc, "rem.fs.rename", true_k);
}

/* rem.fs.mkdir(path [, mode]) -> true; mode 0777 by default (less the umask). */
static int l_mkdir(lua_State *L) {
  const char *path = check_path(L, 1, "rem.fs.mkdir");
  lua_Integer mode = 0777;
  if (!lua_isnoneornil(L, 2)) {
    int ok;
    mode = lua_tointegerx(L, 2, &ok);
    if (!ok || mode < 0 || mode > 07777) {
      return luaL_error(L, "rem.fs.mkdir: bad argument #2 (permission bits expected, "
                        "such as 493 for 0755, got %s)", luaL_typename(L, 2));
    }
  }
  rem_ltask *t = enter(L, "rem.fs.mkdir");
  lua_settop(L, 1);
  pathreq *p = new_req(L, path, K_MKDIR, "rem.fs.mkdir");
  int rc = uv_fs_mkdir(p->fr.loop, &p->fr.req, path, (int)mode, on_path);
  return await_req(L, t, p, rc, "rem.fs.mkdir", true_k);
}

/* Sets rem.core.fs: open (file.c) and the path functions. */
void rem__open_fs(lua_State *L, rem_state *st) {
  static const luaL_Reg fns[] = {
    {"stat", l_stat}, {"remove", l_remove}, {"rename", l_rename}, {"mkdir", l_mkdir},
    {NULL, NULL}};
  lua_newtable(L);
  rem__open_file(L, st);
  rem__setfuncs(L, fns, st);
  lua_setfield(L, -2, "fs");
}
