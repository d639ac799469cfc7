//! [`Process`]: a server or sentinel process the harness spawned: its handle (replaced when it is
//! restarted), whether it still runs, and the signals the tests send it.

use std::process::{Child, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// How [`Process::wait_started`] ended.
#[derive(Debug)]
pub(crate) enum Startup {
    /// It answers and its log says it is ready.
    Ready,
    /// Another process holds the port (this one was killed, or exited).
    PortTaken,
    /// It exited while starting, for another reason (its log says which).
    Exited(ExitStatus),
    /// It did not answer within [`crate::STARTUP_TIMEOUT`] (it was killed).
    TimedOut,
}

/// The handle of a spawned process, `None` before the first start and after a kill or an exit.
#[derive(Debug)]
pub(crate) struct Process {
    /// What it is, for panic messages ("the server", "the sentinel").
    what: &'static str,
    child: Mutex<Option<Child>>,
}

impl Process {
    pub(crate) fn new(what: &'static str) -> Process {
        Process {
            what,
            child: Mutex::new(None),
        }
    }

    /// Takes over a process just spawned.
    pub(crate) fn started(&self, child: Child) {
        *self.child() = Some(child);
    }

    /// Waits until the process just started is up: it `answers` (a `PING`) and its log since the
    /// start (`log`) holds `ready_line`. A `PONG` alone does not prove the process is ours: when
    /// another test's process took the port between `free_port` and the bind, ours aborts and
    /// theirs answers; ours is up once its own log says so. Polls every 10 ms for at most
    /// [`crate::STARTUP_TIMEOUT`]; the process is killed when the port was taken or time ran out.
    pub(crate) fn wait_started(
        &self,
        answers: impl Fn() -> bool,
        log: impl Fn() -> String,
        ready_line: &str,
    ) -> Startup {
        const TAKEN: &str = "Address already in use";
        let deadline = Instant::now() + crate::STARTUP_TIMEOUT;
        loop {
            if answers() {
                let log = log();
                if log.contains(ready_line) {
                    return Startup::Ready;
                }
                if log.contains(TAKEN) {
                    self.kill();
                    return Startup::PortTaken;
                }
            }
            if let Some(status) = self.exited() {
                return if log().contains(TAKEN) {
                    Startup::PortTaken
                } else {
                    Startup::Exited(status)
                };
            }
            if Instant::now() >= deadline {
                self.kill();
                return Startup::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit status, when the process has exited since it was started (it is forgotten then).
    pub(crate) fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child();
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                *child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// The process id, or `None` after [`Process::kill`].
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Whether the process runs (frozen counts as running).
    pub(crate) fn is_running(&self) -> bool {
        let mut child = self.child();
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                *child = None;
                false
            }
            None => false,
        }
    }

    /// `SIGKILL` and reap (no shutdown, no save: a crash). Idempotent.
    pub(crate) fn kill(&self) {
        if let Some(mut c) = self.child().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (`name` for messages). Panics when the process is not running.
    pub(crate) fn signal(&self, sig: Signal, name: &str) {
        let what = self.what;
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("test-redis: cannot send {name}: {what} is not running"));
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .unwrap_or_else(|| panic!("test-redis: invalid pid {pid}"));
        kill_process(pid, sig)
            .unwrap_or_else(|e| panic!("test-redis: cannot send {name} to pid {pid:?}: {e}"));
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        // A poisoned lock only means another thread panicked while holding it; the `Option<Child>`
        // inside is still a valid state, so keep going (a harness must not hide the first panic).
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }
}
