//! A breakpoint tracer: runs a program with `int3` on every function entry of its own
//! executable and reports which entries ran. Each breakpoint traps once, in each
//! process that has its own copy of the code: the original byte is put back at the
//! first hit. Forked children are followed until they exec something else.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::{Context, bail};
use nix::sys::ptrace;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The x86 breakpoint instruction.
const INT3: u8 = 0xcc;

/// What one traced run did.
pub struct Outcome {
    /// Whether the program exited with status 0.
    pub success: bool,
    /// Link-time entry addresses hit, in first-hit order.
    pub entries_hit: Vec<u64>,
}

/// The patched text of the traced executable.
struct Text {
    /// Run-time address of link-time address 0 (the load base of a PIE).
    base: u64,
    /// Link-time address of `original[0]`.
    start: u64,
    original: Vec<u8>,
}

impl Text {
    fn original_byte(&self, entry: u64) -> u8 {
        self.original[(entry - self.start) as usize]
    }
}

/// Runs `program args…` with breakpoints on `entries` (link-time addresses of the
/// program's own functions, ascending) and returns the entries hit. A
/// `position_independent` program's addresses are relative to where it is loaded.
pub fn trace(
    program: &Path,
    args: &[&str],
    entries: Vec<u64>,
    position_independent: bool,
) -> anyhow::Result<Outcome> {
    let mut command = std::process::Command::new(program);
    command.args(args);
    #[allow(unsafe_code)] // the kernel boundary: ptrace(PTRACE_TRACEME) in the child
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // ptrace(PTRACE_TRACEME) system call, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| ptrace::traceme().map_err(std::io::Error::from));
    }
    command.stdout(std::process::Stdio::null());
    let child = command.spawn().context("starting the program")?;
    let main = Pid::from_raw(i32::try_from(child.id())?);
    let outcome = trace_child(main, program, entries, position_independent);
    if outcome.is_err() {
        // Leave no stopped, half-patched process behind.
        let _ = kill(main, Signal::SIGKILL);
        let _ = waitpid(main, Some(WaitPidFlag::__WALL));
    }
    outcome
}

/// Patches in the breakpoints of a child stopped at its exec, then follows it.
fn trace_child(
    main: Pid,
    program: &Path,
    entries: Vec<u64>,
    position_independent: bool,
) -> anyhow::Result<Outcome> {
    let (Some(&first), Some(&last)) = (entries.first(), entries.last()) else {
        bail!("no function entries to trace");
    };
    // The child stops with SIGTRAP right after its exec.
    waitpid(main, Some(WaitPidFlag::__WALL))?;
    ptrace::setoptions(
        main,
        ptrace::Options::PTRACE_O_TRACEFORK
            | ptrace::Options::PTRACE_O_TRACEVFORK
            | ptrace::Options::PTRACE_O_TRACECLONE
            | ptrace::Options::PTRACE_O_TRACEEXEC,
    )?;
    let base = if position_independent {
        load_base(main, program)?
    } else {
        0
    };
    let mut original = vec![0u8; (last - first + 1) as usize];
    let mem = process_memory(main)?;
    mem.read_exact_at(&mut original, base + first)
        .context("reading the program's code")?;
    let mut patched = original.clone();
    for entry in &entries {
        patched[(entry - first) as usize] = INT3;
    }
    mem.write_all_at(&patched, base + first)
        .context("writing breakpoints")?;
    drop(patched);
    let text = Text {
        base,
        start: first,
        original,
    };
    let entries: HashSet<u64> = entries.into_iter().collect();
    follow(main, &text, &entries)
}

/// Waits on every traced process until the program itself exits; then releases the
/// rest (the container's init waits for `start`) with their code restored.
fn follow(main: Pid, text: &Text, entries: &HashSet<u64>) -> anyhow::Result<Outcome> {
    let mut hit_order = Vec::new();
    let mut seen = HashSet::new();
    let mut traced: HashSet<Pid> = HashSet::from([main]);
    resume(main, None)?;
    let success = loop {
        let status = waitpid(None, Some(WaitPidFlag::__WALL))?;
        match status {
            WaitStatus::Exited(pid, code) if pid == main => break code == 0,
            WaitStatus::Signaled(pid, _, _) if pid == main => break false,
            WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _) => {
                traced.remove(&pid);
            }
            WaitStatus::PtraceEvent(pid, _, event)
                if event == ptrace::Event::PTRACE_EVENT_EXEC as i32 =>
            {
                // Its code is no longer ours.
                traced.remove(&pid);
                ptrace::detach(pid, None)?;
            }
            WaitStatus::PtraceEvent(pid, _, _) => resume(pid, None)?,
            WaitStatus::Stopped(pid, Signal::SIGSTOP) if traced.insert(pid) => {
                // A new child's first stop.
                resume(pid, None)?;
            }
            WaitStatus::Stopped(pid, Signal::SIGTRAP) => match take_breakpoint(pid, text, entries)?
            {
                Some(entry) => {
                    if seen.insert(entry) {
                        hit_order.push(entry);
                    }
                    resume(pid, None)?;
                }
                None => resume(pid, Signal::SIGTRAP)?,
            },
            WaitStatus::Stopped(pid, signal) => {
                traced.insert(pid);
                resume(pid, signal)?;
            }
            _ => {}
        }
    };
    traced.remove(&main);
    for pid in traced {
        release(pid, text, entries);
    }
    Ok(Outcome {
        success,
        entries_hit: hit_order,
    })
}

/// If `pid` stopped on one of our breakpoints: puts the original byte back, rewinds
/// the instruction pointer onto it and returns the function entry.
fn take_breakpoint(pid: Pid, text: &Text, entries: &HashSet<u64>) -> anyhow::Result<Option<u64>> {
    let mut regs = ptrace::getregs(pid)?;
    let entry = regs.rip.wrapping_sub(1).wrapping_sub(text.base);
    if !entries.contains(&entry) {
        return Ok(None);
    }
    process_memory(pid)?.write_all_at(&[text.original_byte(entry)], text.base + entry)?;
    regs.rip -= 1;
    ptrace::setregs(pid, regs)?;
    Ok(Some(entry))
}

/// Stops a traced process, restores its code and lets it go on untraced. Stops that
/// come before the SIGSTOP sent here (a breakpoint, another signal) are dealt with
/// first, so it is never left mid-breakpoint or with the SIGSTOP pending.
fn release(pid: Pid, text: &Text, entries: &HashSet<u64>) {
    if kill(pid, Signal::SIGSTOP).is_err() {
        return;
    }
    loop {
        let Ok(status) = waitpid(pid, Some(WaitPidFlag::__WALL)) else {
            return;
        };
        let resumed = match status {
            WaitStatus::Stopped(_, Signal::SIGSTOP) => break,
            WaitStatus::Stopped(_, Signal::SIGTRAP) => match take_breakpoint(pid, text, entries) {
                Ok(Some(_)) => ptrace::cont(pid, None),
                _ => ptrace::cont(pid, Signal::SIGTRAP),
            },
            WaitStatus::Stopped(_, signal) => ptrace::cont(pid, signal),
            WaitStatus::PtraceEvent(..) => ptrace::cont(pid, None),
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return,
            _ => Ok(()),
        };
        if resumed.is_err() {
            return;
        }
    }
    if let Ok(mem) = process_memory(pid) {
        let _ = mem.write_all_at(&text.original, text.base + text.start);
    }
    // Detaching with no signal drops the SIGSTOP: it runs on.
    let _ = ptrace::detach(pid, None);
}

/// Resumes a stopped tracee; one that was killed meanwhile (ESRCH) is not an error,
/// its exit comes through `waitpid`.
fn resume(pid: Pid, signal: impl Into<Option<Signal>>) -> anyhow::Result<()> {
    match ptrace::cont(pid, signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn process_memory(pid: Pid) -> anyhow::Result<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .with_context(|| format!("opening /proc/{pid}/mem"))
}

/// The address the program's first mapping (file offset 0) was loaded at.
fn load_base(pid: Pid, program: &Path) -> anyhow::Result<u64> {
    let program = std::fs::canonicalize(program)?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [range, _, "00000000", _, _, path] = fields[..]
            && Path::new(path) == program
            && let Some((start, _)) = range.split_once('-')
        {
            return Ok(u64::from_str_radix(start, 16)?);
        }
    }
    bail!("{} is not mapped in process {pid}", program.display())
}
