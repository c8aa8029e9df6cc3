;; echo: answers with the request body (CGI-style, WASI preview 1). Reads standard input
;; until end of file into memory, then writes a header block and what it read.
;;   strata fn deploy echo --wasm examples/functions/echo.wat
;;   curl --data 'hi there' http://echo.default.fn.localhost:8080/
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; 0..8: iovec for writing; 8..16: iovec for reading;
  ;; 16: count written/read; 64..: header text; 1024..: body.
  (data (i32.const 64) "Content-Type: application/octet-stream\n\n")
  (func (export "_start")
    (local $len i32) (local $n i32)
    ;; Read until fd_read returns 0 bytes, growing memory as needed.
    (block $done
      (loop $read
        ;; Keep at least 64 KiB free after the body.
        (if (i32.gt_u (i32.add (i32.add (i32.const 1024) (local.get $len)) (i32.const 65536))
                      (i32.mul (memory.size) (i32.const 65536)))
          (then (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
                  (then unreachable))))
        (i32.store (i32.const 8) (i32.add (i32.const 1024) (local.get $len)))
        (i32.store (i32.const 12) (i32.const 65536))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 8) (i32.const 1) (i32.const 16)))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $len (i32.add (local.get $len) (local.get $n)))
        (br $read)))
    (call $write_all (i32.const 64) (i32.const 40))
    (call $write_all (i32.const 1024) (local.get $len)))
  ;; fd_write may write less than asked (WASI writes the first buffer it can): loop.
  (func $write_all (param $at i32) (param $len i32)
    (block $done
      (loop $write
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $at))
        (i32.store (i32.const 4) (local.get $len))
        (br_if $done (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
        (local.set $at (i32.add (local.get $at) (i32.load (i32.const 16))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 16))))
        (br $write)))))
