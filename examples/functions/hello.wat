;; hello: the smallest CGI-style WebAssembly function (WASI preview 1).
;; It writes a header block, a blank line and a body to standard output.
;;   strata fn deploy hello --wasm examples/functions/hello.wat
;;   curl http://hello.default.fn.localhost:8080/
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 0: pointer 16, length 49.
  (data (i32.const 0) "\10\00\00\00\31\00\00\00")
  (data (i32.const 16) "Content-Type: text/plain\n\nhello from WebAssembly\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
