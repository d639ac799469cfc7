//! # test-redis
//!
//! Test support (never published): starts a real `redis-server` on a free loopback port for one test,
//! and lets the test inject faults into it.
//!
//! - The server runs with `--save "" --appendonly no` (nothing written to disk unless a test asks for
//!   it), its data directory and log file in a private temporary directory, bound to `127.0.0.1` only.
//!   It never touches a Redis that may already run on port 6379.
//! - [`RedisServer::start`] returns once the server answers `PING` (retrying while it boots, up to
//!   [`STARTUP_TIMEOUT`]); a server that does not come up fails the test with its log.
//! - The server's log is printed to stderr when the test panics while the server is alive (the usual
//!   way a failed assertion ends), and is available through [`RedisServer::log_contents`].
//! - Dropping the [`RedisServer`] kills the process (`SIGKILL`) and removes its directory.
//! - Faults: [`RedisServer::freeze`] (`SIGSTOP`: the server accepts nothing and answers nothing, as a
//!   stalled host would), [`RedisServer::thaw`] (`SIGCONT`), [`RedisServer::kill`] (`SIGKILL`) and
//!   [`RedisServer::restart`] (a new process on the same port, same directory and arguments, so an
//!   append-only file survives a restart when a test enables `--appendonly yes`).
//!
//! If `redis-server` is not installed the harness panics with a message saying how to install it:
//! tests that need Redis fail, they are never skipped.
//!
//! Why not the `redis-test` crate: its `RedisServer` (1.0) picks a port with a race, does not wait
//! until the server answers, takes no extra arguments, cannot restart on the same port, and has no
//! freeze/thaw; this crate is the small equivalent that does those things, with no Redis client
//! dependency (readiness is checked with a hand-written `PING` over a plain TCP socket).
//!
//! ```no_run
//! use test_redis::RedisServer;
//!
//! let server = RedisServer::builder().password("s3cret").start();
//! assert!(server.url().starts_with("redis://:s3cret@127.0.0.1:"));
//! server.freeze();
//! // ... calls against server.url() now time out ...
//! server.thaw();
//! server.kill();
//! server.restart();
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;

use crate::process::{Process, Startup};

pub mod cluster;
mod process;
mod replication;
pub use cluster::{
    ClusterNode, NodeRole, RedisCluster, RedisClusterBuilder, CLUSTER_READY_TIMEOUT,
};
pub mod sentinel;
pub use sentinel::{
    Promotion, RedisSentinel, RedisSentinelBuilder, SentinelNode, SENTINEL_READY_TIMEOUT,
};

/// How long [`RedisServer::start`] and [`RedisServer::restart`] wait for the server to answer.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How many fresh ports are tried when the chosen one is taken between choosing and binding.
const PORT_ATTEMPTS: usize = 5;

/// The loopback address every test server binds to.
pub const HOST: &str = "127.0.0.1";

/// The `redis-server` binary: `TEST_REDIS_SERVER_BIN` when set, else `redis-server` from `PATH`.
pub fn server_bin() -> String {
    std::env::var("TEST_REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

/// The `redis-cli` binary: `TEST_REDIS_CLI_BIN` when set, else `redis-cli` from `PATH`.
pub fn cli_bin() -> String {
    std::env::var("TEST_REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_owned())
}

/// Runs a prepared `redis-cli` command and returns its standard output, trimmed. Panics, with
/// its standard error, when it cannot run or fails.
pub(crate) fn run_cli(mut cmd: Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "test-redis: cannot run `{}`: {e}. Install redis-tools (apt-get install redis-tools), \
             or set TEST_REDIS_CLI_BIN",
            cli_bin()
        )
    });
    assert!(
        out.status.success(),
        "test-redis: redis-cli failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Options of a [`RedisServer`]; see [`RedisServer::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "call .start() to start the server"]
pub struct RedisServerBuilder {
    args: Vec<String>,
    password: Option<String>,
    port: Option<u16>,
    tls: bool,
    cluster_bus: bool,
}

impl RedisServerBuilder {
    /// Appends one `redis-server` command-line argument. Arguments come after the harness defaults
    /// (`--save "" --appendonly no ...`), so `.args(["--appendonly", "yes"])` overrides them.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several `redis-server` command-line arguments (see [`RedisServerBuilder::arg`]).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Requires this password (`--requirepass`); [`RedisServer::url`] then carries it.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Serves TLS only (`--tls-port`, plain port off), with a certificate for `127.0.0.1` and
    /// `localhost` signed by a fresh test CA ([`RedisServer::ca_cert_path`]); clients are not asked
    /// for certificates. [`RedisServer::url`] is then `rediss://`. Needs the `openssl` command.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Uses this port instead of a free one chosen by the harness.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Runs as a Redis Cluster node (`--cluster-enabled yes`, `nodes.conf` in the server's
    /// directory) whose cluster bus listens on a second free port (`--cluster-port`; the default
    /// `port + 10000` may be taken or out of range). Used by [`crate::RedisCluster`].
    pub fn cluster_node(mut self) -> Self {
        self.cluster_bus = true;
        self
    }

    /// Starts the server and waits until it answers `PING`. Panics (with the server's log) when it
    /// cannot start.
    pub fn start(self) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("test-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("test-redis: cannot create a temporary directory: {e}"));
        let log = dir.path().join("redis.log");
        let tls = self.tls.then(|| make_certs(dir.path()));
        let mut server = RedisServer {
            tls,
            port: self.port.unwrap_or_else(free_port),
            bus_port: self.cluster_bus.then(free_port),
            password: self.password,
            args: self.args,
            log,
            process: Process::new("the server"),
            dir,
        };
        let mut attempt = 1;
        loop {
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(StartError::PortTaken) if self.port.is_none() && attempt < PORT_ATTEMPTS => {
                    // Someone took the port between our probe and the server's bind: try another.
                    attempt += 1;
                    server.port = free_port();
                    if server.bus_port.is_some() {
                        server.bus_port = Some(free_port());
                    }
                }
                Err(e) => server.fail_start(e),
            }
        }
    }
}

/// A `redis-server` process owned by one test. See the [crate documentation](crate).
///
/// All methods take `&self` (the process handle is behind a mutex), so a server can be shared with
/// tasks that inject faults while others generate load (`Arc<RedisServer>`).
#[derive(Debug)]
pub struct RedisServer {
    /// Certificate files when the server speaks TLS.
    tls: Option<TlsFiles>,
    port: u16,
    /// The cluster bus port of a [cluster node](RedisServerBuilder::cluster_node).
    bus_port: Option<u16>,
    password: Option<String>,
    args: Vec<String>,
    log: PathBuf,
    process: Process,
    // Last field: dropped after the process is killed in `Drop`.
    dir: tempfile::TempDir,
}

enum StartError {
    NotInstalled(String),
    Spawn(String),
    PortTaken,
    Exited(String),
    NotReady(String),
}

impl RedisServer {
    /// Starts a server with the default options (free port, no password).
    pub fn start() -> RedisServer {
        Self::builder().start()
    }

    /// Options for a server: extra arguments, password, fixed port.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// `redis://127.0.0.1:PORT`, with `:PASSWORD@` when the server was built with a password.
    /// `rediss://` instead for a [TLS](RedisServerBuilder::tls) server.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("{}://:{pw}@{HOST}:{}", self.scheme(), self.port),
            None => self.url_without_auth(),
        }
    }

    /// [`RedisServer::url`] without credentials, even when the server requires a password.
    pub fn url_without_auth(&self) -> String {
        format!("{}://{HOST}:{}", self.scheme(), self.port)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The PEM file of the CA that signed a [TLS](RedisServerBuilder::tls) server's certificate
    /// (for `SSL_CERT_FILE`, `redis-cli --cacert`, ...); `None` for a plain server.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    /// The TCP port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster bus port of a [cluster node](RedisServerBuilder::cluster_node).
    pub fn bus_port(&self) -> Option<u16> {
        self.bus_port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// The password the server requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The server's working directory (data files, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (kept across restarts; each start appends).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The server's log so far (empty when unreadable).
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id of the running server, or `None` after [`RedisServer::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether a server process is running (frozen counts as running).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Stops the process with `SIGSTOP`: connections stay open but nothing is answered, as with a
    /// stalled host. Panics when the server is not running.
    pub fn freeze(&self) {
        self.process.signal(Signal::STOP, "SIGSTOP");
    }

    /// Resumes a frozen process with `SIGCONT`. Panics when the server is not running.
    pub fn thaw(&self) {
        self.process.signal(Signal::CONT, "SIGCONT");
    }

    /// Kills the process with `SIGKILL` and reaps it (no shutdown, no save: a crash). Idempotent.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// Starts the server again on the same port, with the same directory and arguments, killing a
    /// running one first, and waits until it answers. Panics (with the log) when it cannot start.
    pub fn restart(&self) {
        self.kill();
        if let Err(e) = self.spawn_and_wait() {
            self.fail_start(e);
        }
    }

    /// Calls per command since the last `CONFIG RESETSTAT` (or the start), from the server's
    /// `INFO commandstats`, which does not count the `INFO` that reads it; the `CONFIG RESETSTAT` a
    /// test sends to start counting is left out. Commands a Lua script runs count too: this is the
    /// server's work, not only the round trips.
    pub fn commandstats(&self) -> std::collections::BTreeMap<String, u64> {
        self.cli(["INFO", "commandstats"])
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .filter(|(name, _)| name != "config|resetstat")
            .collect()
    }

    /// Runs `redis-cli` against this server with `args` (authenticating when the server has a
    /// password) and returns its standard output, trimmed. Panics when `redis-cli` fails to run.
    /// Handy for inspecting the server independently of the code under test.
    pub fn cli<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(cli_bin());
        cmd.args(["-h", HOST, "-p", &self.port.to_string()]);
        if let Some(tls) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        if let Some(pw) = &self.password {
            cmd.arg("--no-auth-warning").args(["-a", pw]);
        }
        cmd.args(args);
        run_cli(cmd)
    }

    /// Prints the server's log to stderr, framed, for diagnosis.
    pub fn print_log(&self) {
        eprintln!(
            "----- redis-server log (port {}, {}) -----\n{}\n----- end of redis-server log -----",
            self.port,
            self.log.display(),
            self.log_contents()
        );
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(server_bin());
        match &self.tls {
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
            Some(tls) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        cmd.args(["--bind", HOST])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&self.log);
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
            // Cluster nodes (replicas) authenticate to their primary with the same password.
            cmd.args(["--masterauth", pw]);
        }
        if let Some(bus) = self.bus_port {
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-port", &bus.to_string()]);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn spawn_and_wait(&self) -> Result<(), StartError> {
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let child = self.command().spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StartError::NotInstalled(format!(
                    "`{}` is not installed or not on PATH ({e}). These tests need a real Redis: \
                     install it (apt-get install redis-server, or .ci/run does it), or set \
                     TEST_REDIS_SERVER_BIN",
                    server_bin()
                ))
            } else {
                StartError::Spawn(format!("cannot run `{}`: {e}", server_bin()))
            }
        })?;
        self.process.started(child);
        let startup = self.process.wait_started(
            || self.answers_ping(),
            || self.log_since(log_start),
            "Ready to accept connections",
        );
        match startup {
            Startup::Ready => Ok(()),
            Startup::PortTaken => Err(StartError::PortTaken),
            Startup::Exited(status) => Err(StartError::Exited(format!(
                "redis-server exited ({status}) while starting"
            ))),
            Startup::TimedOut => Err(StartError::NotReady(format!(
                "redis-server did not answer PING within {STARTUP_TIMEOUT:?}"
            ))),
        }
    }

    /// Whether the server answers `PING` (plain: a hand-written RESP exchange; TLS: `redis-cli`).
    fn answers_ping(&self) -> bool {
        let Some(tls) = &self.tls else {
            return ping(self.port, self.password.as_deref());
        };
        let mut cmd = Command::new(cli_bin());
        cmd.args([
            "-h",
            HOST,
            "-p",
            &self.port.to_string(),
            "--tls",
            "--cacert",
        ])
        .arg(&tls.ca);
        if let Some(pw) = &self.password {
            cmd.arg("--no-auth-warning").args(["-a", pw]);
        }
        cmd.arg("PING").stdin(Stdio::null()).stderr(Stdio::null());
        cmd.output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
    }

    fn log_since(&self, offset: u64) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(all.len());
        String::from_utf8_lossy(&all[start..]).into_owned()
    }

    /// Panics with a message saying why the server did not start; `Drop` then prints its log.
    fn fail_start(&self, e: StartError) -> ! {
        let msg = match e {
            StartError::NotInstalled(m) => m,
            StartError::Spawn(m) | StartError::Exited(m) | StartError::NotReady(m) => m,
            StartError::PortTaken => format!("port {} is already in use", self.port),
        };
        panic!(
            "test-redis: {msg} (port {}, log in {} and below)",
            self.port,
            self.log.display()
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log();
        }
        // SIGKILL works on a frozen process too.
        self.kill();
    }
}

/// Certificate files of a TLS test server.
#[derive(Debug)]
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Makes a CA and a server certificate for `127.0.0.1` / `localhost` with the `openssl` command.
fn make_certs(dir: &Path) -> TlsFiles {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("test-redis: cannot run `openssl` ({e}); TLS test servers need it")
            });
        assert!(
            out.status.success(),
            "test-redis: openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=test-redis CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap_or_else(|e| panic!("test-redis: cannot write server.ext: {e}"));
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("redis.crt"),
        key: dir.join("redis.key"),
    }
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
fn free_port() -> u16 {
    let listener = TcpListener::bind((HOST, 0))
        .unwrap_or_else(|e| panic!("test-redis: cannot bind a loopback port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("test-redis: cannot read the bound port: {e}"))
        .port()
}

/// Encodes a command as a RESP array.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Whether a server on `port` answers `PING` with `PONG` (after `AUTH` when a password is given).
/// A server still loading its data answers `-LOADING` and is not ready yet.
fn ping(port: u16, password: Option<&str>) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let mut request = Vec::new();
    if let Some(pw) = password {
        request.extend(resp(&["AUTH", pw]));
    }
    request.extend(resp(&["PING"]));
    if stream.write_all(&request).is_err() {
        return false;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if password.is_some() {
        if reader.read_line(&mut line).is_err() || !line.starts_with("+OK") {
            return false;
        }
        line.clear();
    }
    reader.read_line(&mut line).is_ok() && line.starts_with("+PONG")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(server: &RedisServer, key: &str) -> String {
        server.cli(["GET", key])
    }

    #[test]
    fn starts_answers_and_restarts_on_the_same_port() {
        let server = RedisServer::start();
        assert_ne!(server.port(), 6379);
        assert_eq!(server.cli(["PING"]), "PONG");
        assert_eq!(server.cli(["SET", "k", "v"]), "OK");
        assert_eq!(get(&server, "k"), "v");
        let port = server.port();
        let pid = server.pid().unwrap();
        server.kill();
        assert!(!server.is_running());
        assert!(!ping(port, None));
        server.restart();
        assert_eq!(server.port(), port);
        assert_ne!(server.pid().unwrap(), pid);
        // No persistence by default: the restarted server is empty.
        assert_eq!(get(&server, "k"), "");
        assert!(server
            .log_contents()
            .contains("Ready to accept connections"));
    }

    #[test]
    fn freeze_stops_answers_and_thaw_resumes() {
        let server = RedisServer::start();
        server.freeze();
        assert!(
            !ping(server.port(), None),
            "a frozen server must not answer"
        );
        server.thaw();
        assert!(ping(server.port(), None));
    }

    #[test]
    fn password_is_required_and_in_the_url() {
        let server = RedisServer::builder().password("pw with space").start();
        assert!(server
            .url()
            .starts_with("redis://:pw with space@127.0.0.1:"));
        assert_eq!(server.cli(["PING"]), "PONG");
        assert!(!ping(server.port(), None));
        assert!(ping(server.port(), Some("pw with space")));
    }

    #[test]
    fn extra_args_override_defaults_and_appendonly_survives_restart() {
        let server = RedisServer::builder()
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .start();
        assert_eq!(
            server.cli(["CONFIG", "GET", "appendonly"]),
            "appendonly\nyes"
        );
        server.cli(["SET", "durable", "1"]);
        server.kill();
        server.restart();
        assert_eq!(get(&server, "durable"), "1");
    }

    #[test]
    fn tls_server_answers_over_tls_only() {
        let server = RedisServer::builder().tls().password("pw").start();
        assert!(server.url().starts_with("rediss://:pw@127.0.0.1:"));
        assert!(server.ca_cert_path().unwrap().exists());
        assert_eq!(server.cli(["PING"]), "PONG");
        assert!(!ping(server.port(), Some("pw")), "plain text is not served");
        server.kill();
        server.restart();
        assert_eq!(server.cli(["PING"]), "PONG");
    }

    #[test]
    fn two_servers_get_different_ports() {
        let a = RedisServer::start();
        let b = RedisServer::start();
        assert_ne!(a.port(), b.port());
    }
}
