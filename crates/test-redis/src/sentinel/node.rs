//! One sentinel process of a [`RedisSentinel`]: its configuration file, start (on a free port),
//! stop, freeze and restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::process::Signal;

use super::wire::{query, Reply};
use super::RedisSentinel;
use crate::process::{Process, Startup};
use crate::{cli_bin, free_port, server_bin, HOST, PORT_ATTEMPTS};

impl RedisSentinel {
    /// The topology's `sentinel ...` lines of every sentinel's configuration.
    pub(super) fn sentinel_conf(&self, primary_port: u16) -> String {
        let svc = &self.service;
        let mut conf = format!(
            "sentinel resolve-hostnames no\n\
             sentinel monitor {svc} {HOST} {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {svc} {down}\n\
             sentinel failover-timeout {svc} {failover}\n\
             sentinel parallel-syncs {svc} 1\n",
            quorum = self.quorum,
            down = self.down_after.as_millis().max(1),
            failover = self.failover_timeout.as_millis().max(1),
        );
        if let Some(pw) = &self.password {
            conf.push_str(&format!("sentinel auth-pass {svc} {}\n", conf_quote(pw)));
        }
        if let Some(pw) = &self.sentinel_password {
            conf.push_str(&format!("requirepass {}\n", conf_quote(pw)));
        }
        conf
    }
}

/// Quotes a value for a Redis configuration file (double quotes, backslash escapes).
fn conf_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `redis-server --sentinel` process of a [`RedisSentinel`].
#[derive(Debug)]
pub struct SentinelNode {
    port: u16,
    password: Option<String>,
    conf: PathBuf,
    log: PathBuf,
    process: Process,
    // Last field: dropped after the process is killed in `Drop`.
    dir: tempfile::TempDir,
}

impl SentinelNode {
    /// Writes the configuration (the topology's `sentinel ...` lines plus port, bind, directory and
    /// log) and starts the sentinel, retrying on a fresh port when the chosen one was taken.
    pub(super) fn start(body: &str, topology: &RedisSentinel) -> SentinelNode {
        let dir = tempfile::Builder::new()
            .prefix("test-redis-sentinel-")
            .tempdir()
            .unwrap_or_else(|e| panic!("test-redis: cannot create a temporary directory: {e}"));
        let mut node = SentinelNode {
            port: free_port(),
            password: topology.sentinel_password.clone(),
            conf: dir.path().join("sentinel.conf"),
            log: dir.path().join("sentinel.log"),
            process: Process::new("the sentinel"),
            dir,
        };
        let mut attempt = 1;
        loop {
            node.write_conf(body);
            match node.spawn_and_wait() {
                Ok(()) => return node,
                Err(SpawnError::PortTaken) if attempt < PORT_ATTEMPTS => {
                    attempt += 1;
                    node.port = free_port();
                }
                Err(SpawnError::PortTaken) => {
                    panic!("test-redis: no free port for a sentinel after {attempt} attempts")
                }
                Err(SpawnError::Other(msg)) => panic!(
                    "test-redis: {msg} (sentinel on port {}, log in {} and below)",
                    node.port,
                    node.log.display()
                ),
            }
        }
    }

    pub(super) fn write_conf(&self, body: &str) {
        let conf = format!(
            "port {port}\nbind {HOST}\ndaemonize no\ndir {dir}\nlogfile {log}\n{body}",
            port = self.port,
            dir = conf_quote(&self.dir.path().display().to_string()),
            log = conf_quote(&self.log.display().to_string()),
        );
        std::fs::write(&self.conf, conf)
            .unwrap_or_else(|e| panic!("test-redis: cannot write {}: {e}", self.conf.display()));
    }

    pub(super) fn spawn_and_wait(&self) -> Result<(), SpawnError> {
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let child = Command::new(server_bin())
            .arg(&self.conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                SpawnError::Other(format!(
                    "cannot run `{} <conf> --sentinel` ({e}); these tests need a real Redis: install \
                     it (apt-get install redis-server), or set TEST_REDIS_SERVER_BIN",
                    server_bin()
                ))
            })?;
        self.process.started(child);
        let log_since_start = || {
            let all = std::fs::read(&self.log).unwrap_or_default();
            let start = usize::try_from(log_start).unwrap_or(0).min(all.len());
            String::from_utf8_lossy(&all[start..]).into_owned()
        };
        let startup = self.process.wait_started(
            || matches!(self.query(&["PING"]), Ok(Reply::Status(ref s)) if s == "PONG"),
            log_since_start,
            "Running mode=sentinel",
        );
        match startup {
            Startup::Ready => Ok(()),
            Startup::PortTaken => Err(SpawnError::PortTaken),
            Startup::Exited(status) => Err(SpawnError::Other(format!(
                "the sentinel exited ({status}) while starting"
            ))),
            Startup::TimedOut => Err(SpawnError::Other(format!(
                "the sentinel did not answer PING within {:?}",
                crate::STARTUP_TIMEOUT
            ))),
        }
    }

    /// The sentinel's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// The sentinel's configuration file (Sentinel rewrites it with what it learns).
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The sentinel's log so far (empty when unreadable).
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Prints the sentinel's log to stderr, framed.
    pub fn print_log(&self) {
        eprintln!(
            "----- redis-sentinel log (port {}, {}) -----\n{}\n----- end of redis-sentinel log -----",
            self.port,
            self.log.display(),
            self.log_contents()
        );
    }

    /// The process id, or `None` after [`SentinelNode::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the process runs (frozen counts as running).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Kills the sentinel (`SIGKILL`) and reaps it. Idempotent.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Starts the sentinel again on the same port with its (rewritten) configuration, killing a
    /// running one first, and waits until it answers `PING`.
    pub fn restart(&self) {
        self.kill();
        if let Err(e) = self.spawn_and_wait() {
            let msg = match e {
                SpawnError::PortTaken => format!("port {} is taken", self.port),
                SpawnError::Other(m) => m,
            };
            panic!("test-redis: cannot restart the sentinel: {msg}");
        }
    }

    /// Stops the process with `SIGSTOP` (it accepts connections but answers nothing).
    pub fn freeze(&self) {
        self.process.signal(Signal::STOP, "SIGSTOP");
    }

    /// Resumes a frozen process with `SIGCONT`.
    pub fn thaw(&self) {
        self.process.signal(Signal::CONT, "SIGCONT");
    }

    /// Runs `redis-cli` against this sentinel (authenticating when it has a password) and returns
    /// its standard output, trimmed.
    pub fn cli<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(cli_bin());
        cmd.args(["-h", HOST, "-p", &self.port.to_string()]);
        if let Some(pw) = &self.password {
            cmd.arg("--no-auth-warning").args(["-a", pw]);
        }
        cmd.args(args);
        crate::run_cli(cmd)
    }

    pub(super) fn query(&self, args: &[&str]) -> Result<Reply, String> {
        query(self.port, self.password.as_deref(), args)
    }
}

impl Drop for SentinelNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log();
        }
        self.kill();
    }
}

pub(super) enum SpawnError {
    PortTaken,
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_quoted() {
        assert_eq!(conf_quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
