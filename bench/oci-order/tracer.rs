//! A breakpoint tracer: runs a program with `int3` on every function entry of its own
//! executable and reports which entries ran. Each breakpoint traps once, in each
//! process that has its own copy of the code: the original byte is put back at the
//! first hit. Forked children are followed until they exec something else.

use std::collections::{HashMap, HashSet};
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
/// program's own functions, ascending) and returns the entries hit.
pub fn trace(program: &Path, args: &[&str], entries: Vec<u64>) -> anyhow::Result<Outcome> {
    let (Some(&first), Some(&last)) = (entries.first(), entries.last()) else {
        bail!("no function entries to trace");
    };
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
    // The child stops with SIGTRAP right after its exec.
    waitpid(main, Some(WaitPidFlag::__WALL))?;
    ptrace::setoptions(
        main,
        ptrace::Options::PTRACE_O_TRACEFORK
            | ptrace::Options::PTRACE_O_TRACEVFORK
            | ptrace::Options::PTRACE_O_TRACECLONE
            | ptrace::Options::PTRACE_O_TRACEEXEC,
    )?;
    let base = load_base(main, program)?;
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
    let mut hit_by: HashMap<Pid, HashSet<u64>> = HashMap::new();
    let mut traced: HashSet<Pid> = HashSet::from([main]);
    ptrace::cont(main, None)?;
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
            WaitStatus::PtraceEvent(pid, _, _) => ptrace::cont(pid, None)?,
            WaitStatus::Stopped(pid, Signal::SIGSTOP) if traced.insert(pid) => {
                // A new child's first stop.
                ptrace::cont(pid, None)?;
            }
            WaitStatus::Stopped(pid, Signal::SIGTRAP) => {
                let mut regs = ptrace::getregs(pid)?;
                let entry = regs.rip.wrapping_sub(1).wrapping_sub(text.base);
                if !entries.contains(&entry) {
                    ptrace::cont(pid, Signal::SIGTRAP)?;
                    continue;
                }
                if hit_by.entry(pid).or_default().insert(entry) && !hit_order.contains(&entry) {
                    hit_order.push(entry);
                }
                process_memory(pid)?
                    .write_all_at(&[text.original_byte(entry)], text.base + entry)?;
                regs.rip -= 1;
                ptrace::setregs(pid, regs)?;
                ptrace::cont(pid, None)?;
            }
            WaitStatus::Stopped(pid, signal) => {
                traced.insert(pid);
                ptrace::cont(pid, signal)?;
            }
            _ => {}
        }
    };
    traced.remove(&main);
    for pid in traced {
        release(pid, text);
    }
    Ok(Outcome {
        success,
        entries_hit: hit_order,
    })
}

/// Stops a traced process, restores its code and lets it go on untraced.
fn release(pid: Pid, text: &Text) {
    if kill(pid, Signal::SIGSTOP).is_err() {
        return;
    }
    let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
    if let Ok(mem) = process_memory(pid) {
        let _ = mem.write_all_at(&text.original, text.base + text.start);
    }
    // Detaching with no signal drops the SIGSTOP: it runs on.
    let _ = ptrace::detach(pid, None);
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
