# rem — build, test, demo. `make help` lists the targets.
# Lua 5.4 and libuv are found with pkg-config; `make deps` installs what is missing (Debian).

PKG_CONFIG ?= pkg-config
LUA        ?= lua5.4
BUSTED     ?= busted
PREFIX     ?= /usr/local
BUILD      ?= build

# luarocks passes LUA_INCDIR and LIBUV_INCDIR/LIBUV_LIBDIR; otherwise pkg-config says.
LUA_CFLAGS := $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null))
LUA_LIBS   := $(shell $(PKG_CONFIG) --libs lua5.4 2>/dev/null)
# The rem program carries the Lua core, as Debian's lua5.4 interpreter does: liblua5.4.a,
# its symbols exported (-rdynamic) for the C modules a script requires. Lua's shared library
# is position-independent code, about 15% slower on W1 of bench/. Without the archive: the
# shared library.
LUA_STATIC := $(wildcard $(shell $(PKG_CONFIG) --variable=libdir lua5.4 2>/dev/null)/liblua5.4.a)
REM_LUA_LIBS := $(if $(LUA_STATIC),-rdynamic $(LUA_STATIC) -ldl,$(LUA_LIBS))
UV_CFLAGS  := $(if $(LIBUV_INCDIR),-I$(LIBUV_INCDIR),$(shell $(PKG_CONFIG) --cflags libuv 2>/dev/null))
UV_LIBS    := $(if $(LIBUV_LIBDIR),-L$(LIBUV_LIBDIR) -luv,$(shell $(PKG_CONFIG) --libs libuv 2>/dev/null))
CMOCKA_LIBS := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -pedantic
OPT     ?= -O2 -g
SANITIZE ?=
# CFLAGS/LDFLAGS stay the user's; what rem needs is added here.
override CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -fPIC $(WARN) $(OPT) $(SANITIZE)
ifeq ($(CI),true)
override CFLAGS  += -Werror
endif
override LDFLAGS += $(SANITIZE)

RUNTIME_SRC := $(wildcard runtime/*.c)
BINDING_SRC := $(wildcard bindings/*.c)
RUNTIME_OBJ := $(RUNTIME_SRC:%.c=$(BUILD)/%.o)
BINDING_OBJ := $(BINDING_SRC:%.c=$(BUILD)/%.o)
CTEST_SRC   := $(wildcard test/test_*.c)
CTEST_BIN   := $(CTEST_SRC:test/%.c=$(BUILD)/test/%)

LIBREM   := $(BUILD)/librem.a
# runtime + bindings, for hosts that embed Lua
LIBREM_FULL := $(BUILD)/lib/librem.a
CORE_SO  := $(BUILD)/rem/core.so
REM_BIN  := $(BUILD)/bin/rem

DEBIAN_PKGS := gcc make pkg-config git lua5.4 liblua5.4-dev libuv1-dev libcmocka-dev lua-busted \
  luarocks valgrind redis-server

.PHONY: all deps test ctest spec itest demo asan valgrind clean help install uninstall rock rock-install \
  bench bench-deps doc stress fuzz soak
all: $(LIBREM) $(LIBREM_FULL) $(CORE_SO) $(REM_BIN) $(BUILD)/host $(BUILD)/pool-stack

help:
	@echo "make deps   install the Debian packages that are missing (apt-get)"
	@echo "make        build build/librem.a, build/rem/core.so and build/rem"
	@echo "make test   C tests and busted specs"
	@echo "make demo   run examples/demo.lua"
	@echo "make asan   the whole test suite under ASan+UBSan"
	@echo "make valgrind  the C tests and specs under valgrind"
	@echo "make stress [SCENARIOS=N] [SEED=S]  more fault-injection scenarios (spec/faults.lua)"
	@echo "make fuzz [SECONDS=N] [SEED=S]  the misuse fuzzer under ASan+UBSan (tools/fuzz.lua)"
	@echo "make soak [SOAK_SECONDS=N]  load and soak: clients, resets, RSS and fds over time"
	@echo "make doc    the API reference (ldoc) in doc/api/index.html"
	@echo "make bench  W1-W4 against plain C, Lua+luv and asyncio (bench/, ~10 min)"
	@echo "make install PREFIX=... / make uninstall / make itest"
	@echo "make clean"

# Installs only what is missing, so it is quick when everything is there.
deps:
	@missing=""; for p in $(DEBIAN_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Objects are rebuilt when the flags change (a plain and a sanitizer build never mix).
FLAGS_STAMP := $(BUILD)/.flags
$(shell mkdir -p $(BUILD); echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $(FLAGS_STAMP) || \
  echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $(FLAGS_STAMP))

$(BUILD)/runtime/%.o: runtime/%.c $(wildcard runtime/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(UV_CFLAGS) -c $< -o $@

$(BUILD)/bindings/%.o: bindings/%.c $(wildcard bindings/*.h) $(wildcard runtime/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) $(UV_CFLAGS) -Iruntime -c $< -o $@

$(LIBREM): $(RUNTIME_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(LIBREM_FULL): $(RUNTIME_OBJ) $(BINDING_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(CORE_SO): $(BINDING_OBJ) $(LIBREM)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(BINDING_OBJ) $(LIBREM) $(UV_LIBS)

$(REM_BIN): program/rem.c $(BINDING_OBJ) $(LIBREM) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) $(UV_CFLAGS) -Iruntime -Ibindings \
	  -DREM_INSTALL_LUA_DIR='"$(PREFIX)/share/lua/5.4"' \
	  program/rem.c $(BINDING_OBJ) $(LIBREM) $(LDFLAGS) $(REM_LUA_LIBS) $(UV_LIBS) -lm -o $@

$(BUILD)/test/%: test/%.c $(LIBREM) $(wildcard test/*.h) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(UV_CFLAGS) -Iruntime $< $(LIBREM) $(LDFLAGS) $(CMOCKA_LIBS) $(UV_LIBS) -lm -o $@

# The embedding example: a C host with its own loop (examples/host).
$(BUILD)/host: examples/host/host.c $(LIBREM_FULL) bindings/remlua.h $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) $(UV_CFLAGS) -Iruntime -Ibindings $< $(LIBREM_FULL) \
	  $(LDFLAGS) $(LUA_LIBS) $(UV_LIBS) -lm -o $@

# The runtime alone from C, no Lua: an exit pool and an exit stack (examples/runtime).
$(BUILD)/pool-stack: examples/runtime/pool_stack.c $(LIBREM) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(UV_CFLAGS) -Iruntime $< $(LIBREM) $(LDFLAGS) $(UV_LIBS) -o $@

# Lua finds rem (lua/rem/init.lua) and rem.core (build/rem/core.so) in the tree.
LUA_ENV := LUA_PATH_5_4="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
           LUA_CPATH_5_4="$(CURDIR)/$(BUILD)/?.so;;"

itest: all
	@BUILD=$(BUILD) tools/run-itests

ctest: $(CTEST_BIN)
	@tools/run-ctests $(CTEST_BIN)

spec: $(CORE_SO)
	@$(LUA_ENV) tools/run-specs $(BUSTED)

test: deps
	@$(MAKE) --no-print-directory all $(CTEST_BIN)
	@tools/run-all "$(MAKE) --no-print-directory ctest" "$(MAKE) --no-print-directory spec" \
	  "$(MAKE) --no-print-directory itest"

# 1,000 connections take 2,000 descriptors here: raise the soft limit (up to the hard one).
demo: deps
	@$(MAKE) --no-print-directory all
	ulimit -n 4096 2>/dev/null || ulimit -n $$(ulimit -Hn); $(REM_BIN) examples/demo.lua

# doc: the API reference. ldoc reads doc/reference/*.lua (doc comments describing the Lua
# API, most of which is C; see doc/config.ld) and writes HTML to doc/api/. Its packages are
# installed by this target only. Fails when ldoc warns (an unknown tag, a broken @{ref}).
DOC_PKGS := lua-ldoc lua-markdown

doc:
	@$(MAKE) --no-print-directory deps DEBIAN_PKGS="$(DOC_PKGS)"
	@rm -rf doc/api
	@out=$$(ldoc --fatalwarnings -c doc/config.ld . 2>&1); status=$$?; printf '%s\n' "$$out"; \
	if [ $$status != 0 ] || printf '%s\n' "$$out" | grep -q ':[0-9][0-9]*: '; then \
	  echo "make doc: ldoc failed or warned"; exit 1; fi
	@# ldoc links a type as #name but anchors its section as #Class_name: add the former.
	@sed -i 's|<a name="Class_\([^"]*\)"></a>|&<a name="\1"></a>|' doc/api/modules/*.html
	@echo "API reference: doc/api/index.html"

# ASan+UBSan: a separate build tree; Lua is not instrumented, so the sanitizer runtime is
# preloaded into lua5.4 for the specs, and leak checks cover the C tests.
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE="$(ASAN_FLAGS)" OPT="-O1 -g" all \
	  $(CTEST_SRC:test/%.c=build-asan/test/%)
	@tools/run-all \
	  "$(MAKE) --no-print-directory BUILD=build-asan SANITIZE='$(ASAN_FLAGS)' OPT='-O1 -g' ctest" \
	  "ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$($(CC) -print-file-name=libasan.so):$$($(CC) -print-file-name=libubsan.so) \
	   $(MAKE) --no-print-directory BUILD=build-asan SANITIZE='$(ASAN_FLAGS)' OPT='-O1 -g' spec" \
	  "tools/run-fuzz $(ASAN_FUZZ_SECONDS)"

# A short run of the misuse fuzzer is part of make asan; make fuzz runs it longer.
ASAN_FUZZ_SECONDS ?= 20
SECONDS ?= 60
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SANITIZE="$(ASAN_FLAGS)" OPT="-O1 -g" all
	@tools/run-fuzz $(SECONDS) $(SEED)

# stress: the fault-injection scenarios of spec/faults.lua (the spec runs 2,000 of them):
# SCENARIOS of them from SEED (default: from the clock); a failure prints its seed and the
# command that replays it.
SCENARIOS ?= 20000
stress: $(CORE_SO)
	@$(LUA_ENV) $(LUA) tools/stress.lua $(SCENARIOS) $(SEED)

# soak: clients connecting, exchanging, closing and resetting against a rem server for
# SOAK_SECONDS; RSS and fds printed every second, no growth after the warm-up.
SOAK_SECONDS ?= 60
soak: all
	@$(LUA_ENV) $(REM_BIN) tools/soak.lua $(SOAK_SECONDS)

# make install PREFIX=... [DESTDIR=...]: the library and headers (with rem.pc for
# pkg-config), the Lua modules, and the rem program.
VERSION     := 0.1.0
LUA_MODDIR  := $(PREFIX)/share/lua/5.4
LUA_CMODDIR := $(PREFIX)/lib/lua/5.4
INSTALLED := $(PREFIX)/bin/rem $(PREFIX)/lib/librem.a $(PREFIX)/lib/pkgconfig/rem.pc \
  $(LUA_CMODDIR)/rem/core.so $(addprefix $(LUA_MODDIR)/rem/,$(notdir $(wildcard lua/rem/*.lua))) \
  $(addprefix $(PREFIX)/include/rem/,$(notdir $(wildcard runtime/*.h)) remlua.h)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include/rem $(DESTDIR)$(LUA_MODDIR)/rem $(DESTDIR)$(LUA_CMODDIR)/rem
	install -m 755 $(REM_BIN) $(DESTDIR)$(PREFIX)/bin/rem
	install -m 644 $(LIBREM_FULL) $(DESTDIR)$(PREFIX)/lib/librem.a
	install -m 755 $(CORE_SO) $(DESTDIR)$(LUA_CMODDIR)/rem/core.so
	install -m 644 lua/rem/*.lua $(DESTDIR)$(LUA_MODDIR)/rem/
	install -m 644 runtime/*.h bindings/remlua.h $(DESTDIR)$(PREFIX)/include/rem/
	sed -e 's#@PREFIX@#$(PREFIX)#' -e 's#@VERSION@#$(VERSION)#' rem.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/rem.pc

# For luarocks (rem-scm-1.rockspec): the module only, where luarocks says.
rock: $(CORE_SO)

rock-install: $(CORE_SO)
	install -d $(INST_LIBDIR)/rem $(INST_LUADIR)/rem
	install -m 755 $(CORE_SO) $(INST_LIBDIR)/rem/core.so
	install -m 644 lua/rem/*.lua $(INST_LUADIR)/rem/

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(PREFIX)/include/rem $(DESTDIR)$(LUA_MODDIR)/rem $(DESTDIR)$(LUA_CMODDIR)/rem 2>/dev/null

# bench: W1-W4 (../shared/BENCH.md) with rem and the same work in plain C on libuv, Lua 5.4 +
# luv by hand and Python asyncio/uvloop; a table of medians, ratios and peak RSS (bench/run).
# Its packages are installed by this target only (BENCH_ROUNDS=n, BENCH_ONLY=w1,w3 to narrow).
BENCH_PKGS := lua-luv python3 python3-uvloop time
BENCH_BIN  := $(BUILD)/bench
BENCH_C    := $(addprefix $(BENCH_BIN)/,echo_server w1 w2 w3 w4)

bench-deps:
	@$(MAKE) --no-print-directory deps DEBIAN_PKGS="$(BENCH_PKGS)"

$(BENCH_BIN)/%: bench/c/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(UV_CFLAGS) $< $(LDFLAGS) $(UV_LIBS) -o $@

bench: deps bench-deps
	@$(MAKE) --no-print-directory all $(BENCH_C)
	@REM=$(REM_BIN) BENCH_BIN=$(BENCH_BIN) LUA=$(LUA) $(LUA_ENV) bench/run

# valgrind: the C tests and the specs (lua5.4 under valgrind); definite leaks are errors.
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
valgrind: deps
	@$(MAKE) --no-print-directory all $(CTEST_BIN)
	@tools/run-all "RUNNER='$(VALGRIND)' $(MAKE) --no-print-directory ctest" \
	  "LUA_INTERP=$(CURDIR)/tools/valgrind-lua $(MAKE) --no-print-directory spec"

clean:
	rm -rf build build-asan
