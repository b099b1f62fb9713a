//! Plain HTTP/1.1 (keep-alive, `Content-Length` bodies only) in front of a
//! [`Forge`], one thread per connection.

use crate::forge::{Dialect, Failure, Forge, Request, Response, Snapshot};
use crate::Error;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Largest request body taken (a bit over GitHub's comment limit in 4-byte
/// characters, plus JSON).
const MAX_BODY: usize = 1 << 20;

/// A running fake forge. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct FakeForge {
    /// `http://127.0.0.1:PORT` (the web root).
    pub url: String,
    /// The API root a client is configured with: the web root on GitHub,
    /// `…/api/v1` on Gitea.
    pub api_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    forge: Arc<Mutex<Forge>>,
    stop: Arc<AtomicBool>,
}

impl FakeForge {
    /// Listen on `addr` (`127.0.0.1:0` for any port) and serve on a thread.
    pub fn start(dialect: Dialect, addr: &str) -> Result<FakeForge, Error> {
        let listener = TcpListener::bind(addr).map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let bound = listener.local_addr().map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let url = format!("http://{bound}");
        let forge = Arc::new(Mutex::new(Forge::new(dialect, &url)));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (forge, stop) = (forge.clone(), stop.clone());
            std::thread::spawn(move || serve(listener, forge, stop));
        }
        Ok(FakeForge {
            api_url: format!("{url}{}", dialect.api_prefix()),
            url,
            addr: bound,
            forge,
            stop,
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Forge>, Error> {
        self.forge.lock().map_err(|_| Error::Poisoned)
    }

    /// Add a user with a token; returns its id.
    pub fn add_user(&self, login: &str, token: &str) -> Result<u64, Error> {
        self.lock()?.add_user(login, token)
    }

    /// Answer the next `count` API requests with `failure`.
    pub fn fail_next(&self, failure: Failure, count: usize) -> Result<(), Error> {
        self.lock()?.fail_next(failure, count);
        Ok(())
    }

    /// Delete a comment; false if there was none.
    pub fn delete_comment(&self, id: u64) -> Result<bool, Error> {
        Ok(self.lock()?.delete_comment(id))
    }

    /// Post a comment as `login` without HTTP.
    pub fn inject_comment(&self, repo: &str, issue: u64, login: &str, body: &str) -> Result<u64, Error> {
        self.lock()?.inject_comment(repo, issue, login, body)
    }

    /// Set the comment length limit (characters; `None` for none).
    pub fn set_body_limit(&self, limit: Option<usize>) -> Result<(), Error> {
        self.lock()?.set_body_limit(limit);
        Ok(())
    }

    /// Return whole comment lists, ignoring paging parameters.
    pub fn set_ignore_paging(&self, ignore: bool) -> Result<(), Error> {
        self.lock()?.set_ignore_paging(ignore);
        Ok(())
    }

    /// A copy of the state.
    pub fn state(&self) -> Result<Snapshot, Error> {
        Ok(self.lock()?.snapshot())
    }
}

impl Drop for FakeForge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Accept connections until `stop`, one thread each.
pub fn serve(listener: TcpListener, forge: Arc<Mutex<Forge>>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let (forge, stop) = (forge.clone(), stop.clone());
        std::thread::spawn(move || {
            if let Err(e) = connection(stream, &forge, &stop) {
                eprintln!("wt-forge: connection: {e}");
            }
        });
    }
}

fn connection(stream: TcpStream, forge: &Mutex<Forge>, stop: &AtomicBool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (req, close) = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                let body = serde_json::json!({ "message": e.to_string() }).to_string();
                write_response(
                    &mut writer,
                    &Response {
                        status: 400,
                        headers: vec![],
                        body,
                    },
                    true,
                )?;
                return Ok(());
            }
        };
        let resp = match forge.lock() {
            Ok(mut f) => f.handle(&req),
            Err(_) => Response {
                status: 500,
                headers: vec![],
                body: r#"{"message":"fake forge state poisoned"}"#.into(),
            },
        };
        write_response(&mut writer, &resp, close)?;
        if close {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_response(w: &mut TcpStream, resp: &Response, close: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len(),
        if close { "close" } else { "keep-alive" }
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(resp.body.as_bytes())?;
    w.flush()
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

fn read_request<R: BufRead>(r: &mut R) -> std::io::Result<Option<(Request, bool)>> {
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return Ok(None),
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid("bad request line"));
    };
    let mut close = version == "HTTP/1.0";
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(invalid("connection closed inside the headers"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(invalid("bad header"));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().map_err(|_| invalid("bad content-length"))?,
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "transfer-encoding" => return Err(invalid("chunked request bodies are not supported")),
            "authorization" => authorization = Some(value.to_string()),
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Err(invalid("request body too large"));
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)?;
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Ok(Some((
        Request {
            method: method.to_string(),
            path: percent_decode(path),
            query,
            authorization,
            body,
        },
        close,
    )))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
