//! The harness's small RESP2 client: one command on a fresh connection ([`query`]), a kept
//! connection that asks a data node for its `ROLE` ([`RoleConn`]), and the reply parser. No Redis
//! client dependency, like the rest of the crate, and no `redis-cli` process per question.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::resp;

/// A kept connection to a data node that asks `ROLE`, reopened when it fails (the sentinels kill
/// the normal clients of the replica they promote).
pub(super) struct RoleConn {
    port: u16,
    password: Option<String>,
    reader: Option<BufReader<TcpStream>>,
}

impl RoleConn {
    pub(super) fn new(port: u16, password: Option<&str>) -> RoleConn {
        RoleConn {
            port,
            password: password.map(str::to_owned),
            reader: None,
        }
    }

    pub(super) fn open(&self) -> Option<BufReader<TcpStream>> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        let timeout = Some(Duration::from_millis(500));
        stream.set_read_timeout(timeout).ok()?;
        stream.set_write_timeout(timeout).ok()?;
        let mut reader = BufReader::new(stream);
        if let Some(pw) = &self.password {
            reader.get_ref().write_all(&resp(&["AUTH", pw])).ok()?;
            read_reply(&mut reader).ok()?;
        }
        Some(reader)
    }

    /// Whether the node answers `ROLE` with `master` (false when it does not answer; the
    /// connection is then reopened at the next question).
    pub(super) fn is_master(&mut self) -> bool {
        if self.reader.is_none() {
            self.reader = self.open();
        }
        let Some(reader) = self.reader.as_mut() else {
            return false;
        };
        let answer = match reader.get_ref().write_all(&resp(&["ROLE"])) {
            Ok(()) => read_reply(reader),
            Err(e) => Err(e.to_string()),
        };
        match answer {
            Ok(Reply::Array(a)) => a.first().and_then(Reply::text) == Some("master"),
            Ok(_) => false,
            Err(_) => {
                self.reader = None;
                false
            }
        }
    }
}

/// A RESP2 reply, as far as the harness needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    Nil,
    Status(String),
    Error(String),
    Int(i64),
    Bulk(String),
    Array(Vec<Reply>),
}

impl Reply {
    pub(super) fn text(&self) -> Option<&str> {
        match self {
            Reply::Status(s) | Reply::Bulk(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `name` in a flat `[name, value, name, value, ...]` array (what `SENTINEL
    /// REPLICAS` returns per replica).
    pub(super) fn field(&self, name: &str) -> Option<String> {
        let Reply::Array(items) = self else {
            return None;
        };
        items
            .chunks(2)
            .find(|kv| kv.len() == 2 && kv[0].text() == Some(name))
            .and_then(|kv| kv[1].text().map(str::to_owned))
    }
}

/// Sends one command (after `AUTH` when a password is given) to `127.0.0.1:port` and reads the
/// reply. Errors (`Err`) are transport failures; a server error is `Ok(Reply::Error)`.
pub(super) fn query(port: u16, password: Option<&str>, args: &[&str]) -> Result<Reply, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let timeout = Some(Duration::from_secs(2));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| e.to_string())?;
    let mut request = Vec::new();
    if let Some(pw) = password {
        request.extend(resp(&["AUTH", pw]));
    }
    request.extend(resp(args));
    (&stream).write_all(&request).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    if password.is_some() {
        match read_reply(&mut reader)? {
            Reply::Status(_) => {}
            other => return Err(format!("AUTH answered {other:?}")),
        }
    }
    read_reply(&mut reader)
}

pub(super) fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at_checked(1).ok_or("connection closed")?;
    let num = || {
        rest.parse::<i64>()
            .map_err(|e| format!("bad length {rest:?}: {e}"))
    };
    match kind {
        "+" => Ok(Reply::Status(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => Ok(Reply::Int(num()?)),
        "$" => {
            let Ok(len) = usize::try_from(num()?) else {
                return Ok(Reply::Nil);
            };
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(len);
            Ok(Reply::Bulk(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" => {
            let Ok(len) = usize::try_from(num()?) else {
                return Ok(Reply::Nil);
            };
            (0..len)
                .map(|_| read_reply(r))
                .collect::<Result<_, _>>()
                .map(Reply::Array)
        }
        _ => Err(format!("unexpected reply line {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_replies() {
        let raw = b"*2\r\n*4\r\n$4\r\nname\r\n$3\r\na:1\r\n$5\r\nflags\r\n+slave\r\n$-1\r\n:7\r\n";
        let mut r = BufReader::new(&raw[..]);
        let reply = read_reply(&mut r).unwrap();
        let Reply::Array(items) = &reply else {
            panic!("{reply:?}")
        };
        assert_eq!(items[0].field("flags").as_deref(), Some("slave"));
        assert_eq!(items[0].field("name").as_deref(), Some("a:1"));
        assert_eq!(items[0].field("port"), None);
        let mut r = BufReader::new(&b"*-1\r\n-ERR no\r\n"[..]);
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Nil);
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("ERR no".into()));
    }
}
