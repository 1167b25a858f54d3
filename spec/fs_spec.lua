-- rem.fs: files (open, read formats, write, lines, seek, flush, close) and the path
-- functions, over libuv's fs requests. Every test checks that rem left nothing on the loop
-- and that the process has as many fds open as before it.
local H = require "spec.helper"
local rem = H.rem

local dir, baseline

local function path(name) return dir .. "/" .. name end

-- Writes `data` with Lua's io (a reference the specs do not depend on rem for).
local function put(name, data)
  local f = assert(io.open(path(name), "wb"))
  f:write(data)
  f:close()
end

local function get(name)
  local f = assert(io.open(path(name), "rb"))
  local data = f:read("a")
  f:close()
  return data
end

-- Runs `fn` in rem.run; returns the error it raised (a test failure if none).
local function run_error(fn) return H.run_error(fn) end

describe("rem.fs", function()
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    collectgarbage()
    baseline = H.fd_count()
  end)

  after_each(function()
    H.assert_clean()
    collectgarbage()
    assert.are.equal(baseline, H.fd_count(), "file descriptors leaked")
    os.execute("rm -rf " .. dir)
  end)

  describe("open, write, read", function()
    it("round-trips text, and write returns the file", function()
      H.run(function()
        local f <close> = rem.fs.open(path("t.txt"), "w")
        assert.are.equal(f, f:write("one\n", "two\n"):write("three"))
        f:close()
        local g <close> = rem.fs.open(path("t.txt"))
        assert.are.same({ "one", "two\n", "three" }, { g:read("l", "L", "l") })
        assert.is_nil(g:read("l"))
      end)
      assert.are.equal("one\ntwo\nthree", get("t.txt"))
    end)

    it("opens for reading by default", function()
      put("d.txt", "x\n")
      H.run(function()
        local f <close> = rem.fs.open(path("d.txt"))
        assert.are.equal("x", f:read())
      end)
    end)

    it("round-trips binary data: every byte value, zero bytes, \\r\\n", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local data = table.concat(bytes) .. "\0\0\r\n\r\n" .. table.concat(bytes):reverse()
      H.run(function()
        local f <close> = rem.fs.open(path("b.bin"), "wb")
        f:write(data)
        f:close()
        local g <close> = rem.fs.open(path("b.bin"), "rb")
        assert.are.equal(data:sub(1, 100), g:read(100))
        assert.are.equal(data:sub(101, 101), g:read(1))
        assert.are.equal(data:sub(102), g:read("a"))
        assert.are.equal("", g:read("a"))  -- "a" at the end: "", not nil
        assert.is_nil(g:read(1))
      end)
      assert.are.equal(data, get("b.bin"))
    end)

    it("writes numbers as Lua's io does", function()
      H.run(function()
        local f <close> = rem.fs.open(path("n.txt"), "w")
        f:write(1, " ", 1.5, " ", 10.0, " ", -7, " ", 2 ^ 63)
      end)
      local ref = assert(io.open(path("ref.txt"), "w"))
      ref:write(1, " ", 1.5, " ", 10.0, " ", -7, " ", 2 ^ 63)
      ref:close()
      assert.are.equal(get("ref.txt"), get("n.txt"))
    end)

    it("round-trips a file larger than 1 MB, written and read in pieces", function()
      local lines = {}
      for i = 1, 30000 do lines[i] = ("line %d %s"):format(i, ("x"):rep(i % 70)) end
      local data = table.concat(lines, "\n") .. "\n"
      assert.is_true(#data > 1024 * 1024)
      H.run(function()
        local f <close> = rem.fs.open(path("big.txt"), "w")
        for i = 1, #lines do f:write(lines[i], "\n") end
        f:close()
        assert.are.equal(#data, rem.fs.stat(path("big.txt")).size)

        local g <close> = rem.fs.open(path("big.txt"))
        assert.is_true(data == g:read("a"), "read(\"a\") differs")
        g:seek("set", 0)
        local n = 0
        for line in g:lines() do
          n = n + 1
          assert.are.equal(lines[n], line)
        end
        assert.are.equal(#lines, n)
        g:seek("set", 0)
        local parts = {}
        while true do
          local chunk = g:read(100000)
          if not chunk then break end
          parts[#parts + 1] = chunk
        end
        assert.is_true(data == table.concat(parts), "read(n) differs")
        -- one write of the whole: a single request, written through short writes if any
        local h <close> = rem.fs.open(path("big2.txt"), "w")
        h:write(data)
      end)
      assert.is_true(data == get("big2.txt"), "big2.txt differs")
    end)

    it("reads a line longer than the read-ahead", function()
      local long = ("abcdefgh"):rep(40000)
      put("long.txt", long .. "\nend")
      H.run(function()
        local f <close> = rem.fs.open(path("long.txt"))
        assert.are.equal(long, f:read("l"))
        assert.are.equal("end", f:read("L"))
        assert.is_nil(f:read("L"))
      end)
    end)
  end)

  describe("read formats", function()
    local text = "  42  -3.5e2\n0x1F .5 7. 1e 12abc\nnot a number\n\nlast line without newline"

    -- The same sequence of reads through Lua's io and through rem gives the same values.
    local function same_as_io(formats)
      put("f.txt", text)
      local ref = assert(io.open(path("f.txt")))
      local expected = {}
      for i, fmt in ipairs(formats) do
        expected[i] = table.pack(ref:read(table.unpack(fmt)))
      end
      ref:close()
      local got = H.run(function()
        local f <close> = rem.fs.open(path("f.txt"))
        local out = {}
        for i, fmt in ipairs(formats) do out[i] = table.pack(f:read(table.unpack(fmt))) end
        return out
      end)
      for i = 1, #formats do
        assert.are.same(expected[i], got[i], "read #" .. i)
        for j = 1, expected[i].n do  -- integers stay integers, floats floats
          assert.are.equal(math.type(expected[i][j]), math.type(got[i][j]))
        end
      end
    end

    it("'n' reads numbers as io does, nil when none is there", function()
      same_as_io({ { "n" }, { "n" }, { "n" }, { "n" }, { "n" }, { "n" }, { "l" }, { "n" },
                   { "l" }, { "n", "l" }, { "a" }, { "n" } })
    end)

    it("'l', 'L', 'a' and counts as io does, with several formats in one call", function()
      same_as_io({ { "L" }, { 3, "l" }, { "l", "l", "L" }, { 0 }, { "L" }, { 4 }, { "a" },
                   { 0 }, { "l" }, { "a" }, { 1 } })
    end)

    it("accepts Lua 5.3's '*l' style", function()
      same_as_io({ { "*l" }, { "*n" }, { "*L" }, { "*a" } })
    end)

    it("stops at the first format that finds the end", function()
      put("e.txt", "only\n")
      H.run(function()
        local f <close> = rem.fs.open(path("e.txt"))
        local r = table.pack(f:read("l", "l", "l"))
        assert.are.equal(2, r.n)
        assert.are.equal("only", r[1])
        assert.is_nil(r[2])
      end)
    end)

    it("reads an empty file", function()
      put("empty.txt", "")
      H.run(function()
        local f <close> = rem.fs.open(path("empty.txt"))
        assert.is_nil(f:read("l"))
        assert.is_nil(f:read("n"))
        assert.is_nil(f:read(0))
        assert.is_nil(f:read(5))
        assert.are.equal("", f:read("a"))
      end)
    end)

    it("lines() takes formats and leaves the file open", function()
      put("l.txt", "1 2\n3 4\n")
      H.run(function()
        local f <close> = rem.fs.open(path("l.txt"))
        local pairs_read = {}
        for a, b in f:lines("n", "n") do pairs_read[#pairs_read + 1] = { a, b } end
        assert.are.same({ { 1, 2 }, { 3, 4 } }, pairs_read)
        f:seek("set")
        local ls = {}
        for l in f:lines("L") do ls[#ls + 1] = l end
        assert.are.same({ "1 2\n", "3 4\n" }, ls)
        assert.are.equal(8, f:seek())  -- still open
      end)
    end)

    it("rejects bad formats", function()
      put("x.txt", "x")
      H.run(function()
        local f <close> = rem.fs.open(path("x.txt"))
        assert.matches("file:read: bad argument #1 %(invalid format%)",
          H.error_of(f.read, f, "x"))
        assert.matches("file:read: bad argument #2 %(invalid format%)",
          H.error_of(f.read, f, "l", {}))
        assert.matches("count must not be negative", H.error_of(f.read, f, -1))
        assert.matches("file:lines: bad argument #1", H.error_of(f.lines, f, "z"))
      end)
    end)
  end)

  describe("seek", function()
    it("moves and reports the position as io's seek", function()
      put("s.txt", "0123456789")
      H.run(function()
        local f <close> = rem.fs.open(path("s.txt"), "r+")
        assert.are.equal(0, f:seek())
        assert.are.equal("012", f:read(3))
        assert.are.equal(3, f:seek("cur"))  -- the logical position, not the read-ahead's
        assert.are.equal(10, f:seek("end"))
        assert.is_nil(f:read(1))
        assert.are.equal(7, f:seek("end", -3))
        assert.are.equal("789", f:read("a"))
        assert.are.equal(2, f:seek("set", 2))
        f:write("AB")
        assert.are.equal(4, f:seek("cur"))
        assert.are.equal("45", f:read(2))  -- reading after writing flushes first
        assert.are.equal(1, f:seek("cur", -5))
        assert.are.equal("1AB", f:read(3))
        assert.are.equal(12, f:seek("set", 12))  -- past the end: a write makes a hole
        f:write("Z")
      end)
      assert.are.equal("01AB456789\0\0Z", get("s.txt"))
    end)

    it("reads what it wrote in w+ mode", function()
      H.run(function()
        local f <close> = rem.fs.open(path("wp.txt"), "w+")
        f:write("hello\nworld\n")
        assert.are.equal(12, f:seek())
        f:seek("set")
        assert.are.same({ "hello", "world" }, { f:read("l", "l") })
      end)
    end)

    it("rejects a negative position and a bad whence", function()
      put("s.txt", "abc")
      H.run(function()
        local f <close> = rem.fs.open(path("s.txt"))
        local err = H.error_of(f.seek, f, "set", -1)
        assert.are.equal("EINVAL", err.code)
        assert.matches("file:seek", err.message)
        assert.are.equal(0, f:seek())  -- unchanged
        assert.matches("bad argument #1", H.error_of(f.seek, f, "middle"))
        assert.matches("bad argument #2", H.error_of(f.seek, f, "set", 1.5))
      end)
    end)

    it("cannot seek a pipe (ESPIPE), but reads and writes it", function()
      local fifo = path("fifo")
      assert(os.execute("mkfifo " .. fifo))
      H.run(function()
        local f <close> = rem.fs.open(fifo, "r+")  -- O_RDWR: opening does not block
        assert.are.equal("ESPIPE", H.error_of(f.seek, f).code)
        f:write("through the pipe\n"):flush()
        assert.are.equal("through the pipe", f:read("l"))
      end)
    end)
  end)

  describe("append mode", function()
    it("'a' writes at the end, and its position is the end", function()
      put("a.txt", "first\n")
      H.run(function()
        local f <close> = rem.fs.open(path("a.txt"), "a")
        assert.are.equal(6, f:seek())
        f:write("second\n")
        assert.are.equal(13, f:seek())
        f:seek("set", 0)
        f:write("third\n")  -- append mode: still at the end
      end)
      assert.are.equal("first\nsecond\nthird\n", get("a.txt"))
    end)

    it("'a+' reads from the start and writes at the end", function()
      put("a.txt", "one\ntwo\n")
      H.run(function()
        local f <close> = rem.fs.open(path("a.txt"), "a+")
        assert.are.equal("one", f:read("l"))
        f:write("three\n")
        assert.are.equal(14, f:seek("cur"))
        f:seek("set", 4)
        assert.are.equal("two\nthree\n", f:read("a"))
      end)
      assert.are.equal("one\ntwo\nthree\n", get("a.txt"))
    end)

    it("'a' creates the file; 'w' truncates it", function()
      put("w.txt", "old content")
      H.run(function()
        local a <close> = rem.fs.open(path("new.txt"), "a")
        a:write("created")
        local w <close> = rem.fs.open(path("w.txt"), "w")
        w:write("new")
      end)
      assert.are.equal("created", get("new.txt"))
      assert.are.equal("new", get("w.txt"))
    end)
  end)

  describe("flush and close", function()
    it("flush() makes buffered writes visible to another reader", function()
      H.run(function()
        local f <close> = rem.fs.open(path("fl.txt"), "w")
        f:write("buffered")
        assert.are.equal("", get("fl.txt"))
        assert.are.equal(f, f:flush())
        assert.are.equal("buffered", get("fl.txt"))
      end)
    end)

    it("close() returns true; __close after it does nothing", function()
      H.run(function()
        local f <close> = rem.fs.open(path("c.txt"), "w")
        f:write("x")
        assert.is_true(f:close())
        assert.matches("closed", tostring(f))
      end)
      assert.are.equal("x", get("c.txt"))
    end)

    it("an error in the block still closes and flushes the file", function()
      local err = run_error(function()
        local f <close> = rem.fs.open(path("c.txt"), "w")
        f:write("kept")
        error("boom")
      end)
      assert.matches("boom", tostring(err))
      assert.are.equal("kept", get("c.txt"))
    end)

    it("a file collected without close is closed (and its writes flushed)", function()
      H.run(function()
        local f = rem.fs.open(path("gc.txt"), "w")
        f:write("flushed by the safety net")
        f = nil  -- luacheck: ignore
        collectgarbage()
        collectgarbage()
      end)
      -- rem.run returned only once the background flush and close had finished
      assert.are.equal("flushed by the safety net", get("gc.txt"))
    end)
  end)

  describe("errors", function()
    it("a missing file: ENOENT naming the function and the path", function()
      local missing = path("missing.txt")
      local err = run_error(function() rem.fs.open(missing) end)
      assert.are.equal(rem.Error, getmetatable(err))
      assert.are.equal("ENOENT", err.code)
      assert.are.equal(missing, err.path)
      assert.matches("rem.fs.open: " .. missing:gsub("%p", "%%%0"), err.message)
      assert.matches("^ENOENT: rem.fs.open", tostring(err))
    end)

    it("a directory as a file: EISDIR, for reading and for writing, no fd left", function()
      for _, mode in ipairs { "r", "w", "r+", "a" } do
        local err = run_error(function() rem.fs.open(dir, mode) end)
        assert.are.equal("EISDIR", err.code)
      end
    end)

    it("a bad mode is a clear error", function()
      for _, mode in ipairs { "rw", "x", "", "r++", "rb+", "w+x", "+" } do
        local err = run_error(function() rem.fs.open(path("m.txt"), mode) end)
        assert.matches("rem.fs.open: bad argument #2 %(invalid mode", err)
      end
      H.run(function()  -- what io.open accepts
        for _, mode in ipairs { "wb", "r+b", "rb", "a+b", "w+", "rbb" } do
          local f <close> = rem.fs.open(path("m.txt"), mode)
        end
      end)
    end)

    it("bad arguments name the function", function()
      H.run(function()
        assert.matches("rem.fs.open: bad argument #1 %(string expected, got no value%)",
          H.error_of(rem.fs.open))
        assert.matches("rem.fs.open: bad argument #2 %(string expected, got number%)",
          H.error_of(rem.fs.open, "x", 1))
        local f <close> = rem.fs.open(path("w.txt"), "w")
        assert.matches("file:write: bad argument #2 %(string expected, got table%)",
          H.error_of(f.write, f, "ok", {}))
        assert.matches("bad self", H.error_of(f.read, "not a file"))
      end)
    end)

    it("use after close is a clear error", function()
      H.run(function()
        local f = rem.fs.open(path("u.txt"), "w")
        f:close()
        for _, call in ipairs {
          function() f:read() end, function() f:write("x") end, function() f:seek() end,
          function() f:lines() end, function() f:flush() end, function() f:close() end,
        } do
          assert.matches("attempt to use a closed file", H.error_of(call))
        end
      end)
    end)

    it("reading a write-only file, writing a read-only one: EBADF", function()
      put("r.txt", "data")
      H.run(function()
        local w <close> = rem.fs.open(path("w.txt"), "w")
        local err = H.error_of(w.read, w)
        assert.are.equal("EBADF", err.code)
        assert.matches("not open for reading", err.message)
        local r <close> = rem.fs.open(path("r.txt"))
        assert.are.equal("EBADF", H.error_of(r.write, r, "x").code)
        assert.are.equal("data", r:read("a"))
      end)
    end)

    it("suspending outside a task is a clear error", function()
      assert.matches("rem.fs.open: not inside a task",
        H.error_of(rem.fs.open, path("x")))
      assert.matches("rem.fs.stat: not inside a task", H.error_of(rem.fs.stat, dir))
    end)
  end)

  describe("stat, remove, rename, mkdir", function()
    it("stat describes files and directories", function()
      put("s.txt", "12345")
      H.run(function()
        local st = rem.fs.stat(path("s.txt"))
        assert.are.equal("file", st.type)
        assert.are.equal(5, st.size)
        assert.is_true(math.abs(st.mtime - os.time()) < 60)
        assert.are.equal("number", type(st.mode))
        assert.is_true(st.mode & 256 ~= 0)  -- owner can read
        assert.are.equal("directory", rem.fs.stat(dir).type)
        local err = H.error_of(rem.fs.stat, path("none"))
        assert.are.equal("ENOENT", err.code)
        assert.matches("rem.fs.stat: ", err.message)
      end)
    end)

    it("mkdir makes a directory, with permission bits; EEXIST when it exists", function()
      H.run(function()
        assert.is_true(rem.fs.mkdir(path("sub")))
        assert.are.equal("directory", rem.fs.stat(path("sub")).type)
        rem.fs.mkdir(path("priv"), 448)  -- 0700
        assert.are.equal(448, rem.fs.stat(path("priv")).mode)
        assert.are.equal("EEXIST", H.error_of(rem.fs.mkdir, path("sub")).code)
        assert.are.equal("ENOENT", H.error_of(rem.fs.mkdir, path("a/b/c")).code)
        assert.matches("bad argument #2", H.error_of(rem.fs.mkdir, path("z"), "rwx"))
      end)
    end)

    it("rename moves a file; its error names both paths", function()
      put("from.txt", "moved")
      H.run(function()
        assert.is_true(rem.fs.rename(path("from.txt"), path("to.txt")))
        assert.are.equal("ENOENT", H.error_of(rem.fs.stat, path("from.txt")).code)
        local err = H.error_of(rem.fs.rename, path("from.txt"), path("x.txt"))
        assert.are.equal("ENOENT", err.code)
        assert.matches("from.txt %-> .*x.txt", err.message)
      end)
      assert.are.equal("moved", get("to.txt"))
    end)

    it("remove removes files and empty directories, as os.remove", function()
      put("gone.txt", "")
      H.run(function()
        assert.is_true(rem.fs.remove(path("gone.txt")))
        assert.are.equal("ENOENT", H.error_of(rem.fs.remove, path("gone.txt")).code)
        rem.fs.mkdir(path("d"))
        put("d/inner", "")
        assert.are.equal("ENOTEMPTY", H.error_of(rem.fs.remove, path("d")).code)
        rem.fs.remove(path("d/inner"))
        assert.is_true(rem.fs.remove(path("d")))
        assert.are.equal("ENOENT", H.error_of(rem.fs.stat, path("d")).code)
      end)
    end)
  end)

  describe("cancellation", function()
    it("a read blocked in the threadpool is cancelled promptly; the fd still closes", function()
      local fifo = path("fifo")
      assert(os.execute("mkfifo " .. fifo))
      H.run(function()
        local f <close> = rem.fs.open(fifo, "r+")
        local reader = rem.spawn(function() return f:read("l") end)
        rem.sleep(0.02)  -- the reader now waits in read(2), which nothing writes to
        local t0 = rem.now()
        reader:cancel()
        local err = H.error_of(reader.join, reader)
        assert.is_true(rem.is_cancelled(err))
        assert.is_true(rem.now() - t0 < 0.5)
        -- The abandoned read(2) still runs; give it bytes so it can end, then close,
        -- which waits for it.
        local w = assert(io.open(fifo, "w"))
        w:write("late\n")
        w:close()
      end)
    end)

    it("another task's read in progress makes a second reader fail clearly", function()
      local fifo = path("fifo")
      assert(os.execute("mkfifo " .. fifo))
      H.run(function()
        local f <close> = rem.fs.open(fifo, "r+")
        local reader = rem.spawn(function() return f:read("l") end)
        rem.sleep(0.01)
        assert.matches("file:read: the file is in use by another task", H.error_of(f.read, f))
        assert.matches("file:write: the file is in use", H.error_of(f.write, f, "x"))
        local w = assert(io.open(fifo, "w"))
        w:write("line\n")
        w:close()
        assert.are.equal("line", reader:join())
      end)
    end)

    it("rem.timeout(0) around open and read, many times: nothing leaks", function()
      put("t.txt", ("0123456789\n"):rep(20000))
      local outcomes = {}
      H.run(function()
        for i = 1, 60 do
          local ok, err = pcall(rem.timeout, (i % 3) * 0.0005, function()
            local f <close> = rem.fs.open(path("t.txt"))
            return #f:read("a")
          end)
          assert.is_true(ok or rem.is_timeout(err), tostring(err))
          outcomes[ok and "done" or "timed out"] = true
        end
      end)
      assert.is_true(outcomes["timed out"])
    end)

    it("an open cancelled while in flight closes the fd it later gets", function()
      put("o.txt", "x")
      H.run(function()
        for _ = 1, 20 do
          local t = rem.spawn(rem.fs.open, path("o.txt"))
          rem.checkpoint()  -- t has started its open, which has not completed
          t:cancel()
          assert.is_true(rem.is_cancelled(H.error_of(t.join, t)))
        end
      end)
      -- rem.run returned after the abandoned opens finished and their fds were closed
    end)

    it("a write cancelled in flight keeps the rest buffered; close writes it", function()
      local big = ("z"):rep(3 * 1024 * 1024)
      H.run(function()
        local f <close> = rem.fs.open(path("cw.txt"), "w")
        local writer = rem.spawn(function() f:write(big) end)
        rem.checkpoint()  -- the writer's flush is now in the threadpool
        writer:cancel()
        assert.is_true(rem.is_cancelled(H.error_of(writer.join, writer)))
      end)
      local got = get("cw.txt")
      assert.are.equal(#big, #got)
      assert.is_true(big == got, "the content differs")
    end)

    it("a read cancelled in flight leaves the file consistent", function()
      local data = ("0123456789abcdef"):rep(100000)
      put("cr.txt", data)
      H.run(function()
        local f <close> = rem.fs.open(path("cr.txt"))
        local reader = rem.spawn(function() return f:read("a") end)
        rem.checkpoint()  -- the reader's first read request is in the threadpool
        reader:cancel()
        assert.is_true(rem.is_cancelled(H.error_of(reader.join, reader)))
        assert.are.equal(0, f:seek())  -- waits for the abandoned request; nothing consumed
        assert.is_true(data == f:read("a"), "the content differs")
      end)
    end)

    it("a task cancelled before a request raises without starting one", function()
      put("x.txt", "x")
      H.run(function()
        local f <close> = rem.fs.open(path("x.txt"))
        local t = rem.spawn(function()
          rem.sleep(10)
        end)
        rem.checkpoint()
        t:cancel()
        local err = H.error_of(t.join, t)
        assert.is_true(rem.is_cancelled(err))
        local e2 = H.error_of(rem.timeout, 0, function()
          rem.sleep(0.01)  -- the deadline passes here
          return f:read("a")
        end)
        assert.is_true(rem.is_timeout(e2))
        assert.are.equal("x", f:read("a"))  -- the file is still usable
      end)
    end)
  end)

  it("tostring names the path", function()
    put("n.txt", "")
    H.run(function()
      local f <close> = rem.fs.open(path("n.txt"))
      assert.matches("^rem.file %(.*n.txt%)", tostring(f))
    end)
  end)
end)
