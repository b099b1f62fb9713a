//! RouterOS REST over HTTPS: a small blocking HTTP/1.1 client (std
//! `TcpStream` + rustls, one fresh connection per request, basic auth),
//! lenient JSON decoding, typed errors, and a [`Client`] with the verbs
//! Warren uses that counts its writes.
//!
//! Every request opens a new TCP + TLS connection (`Connection: close`), so
//! a verification after an apply never rides on a connection opened before
//! it. The password is only ever in the `Authorization` header: never in
//! an error, a log line or a report.

use super::tls;
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use warren_plan::ros::{RosAccess, RosRow};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one read or write may take (RouterOS itself gives up after 60 s).
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest reply accepted (a few thousand firewall rules are < 2 MB).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// A failed REST request.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The router answered with an error (`{error, message, detail}`).
    #[error("{method} /rest/{path}: HTTP {status} {message}{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        method: String,
        path: String,
        status: u16,
        message: String,
        detail: Option<String>,
    },
    /// The router could not be reached, or TLS failed (a certificate that is
    /// not the pinned one among others).
    #[error("{method} /rest/{path}: cannot reach the router at {addr}: {reason}")]
    Unreachable {
        method: String,
        path: String,
        addr: String,
        reason: String,
    },
    /// The reply is not what RouterOS sends.
    #[error("{method} /rest/{path}: bad reply: {reason}")]
    BadReply {
        method: String,
        path: String,
        reason: String,
    },
}

impl RestError {
    /// Whether the router could not be reached at all (as opposed to
    /// answering with an error).
    pub fn unreachable(&self) -> bool {
        matches!(self, RestError::Unreachable { .. })
    }
}

/// One REST request and its decoded JSON reply (`null` for an empty body).
pub trait Transport: Send {
    /// `method` `/rest/<path>` with an optional JSON body.
    fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, RestError>;
}

/// The live transport: HTTPS to the router, pinned certificate, basic auth.
pub struct Https {
    addr: SocketAddr,
    host: String,
    auth: String,
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the authorization header.
        f.debug_struct("Https")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Https {
    /// A transport to `access` with `password`.
    pub fn new(access: &RosAccess, password: &str) -> Result<Https, rustls::Error> {
        let creds = format!("{}:{password}", access.user);
        Ok(Https {
            addr: SocketAddr::from((access.address, access.port)),
            host: access.address.to_string(),
            auth: base64::engine::general_purpose::STANDARD.encode(creds),
            tls: tls::client_config(&access.fingerprint)?,
        })
    }

    fn exchange(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Vec<u8>), String> {
        let tcp = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let conn = rustls::ClientConnection::new(self.tls.clone(), name).map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} /rest/{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            self.auth,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str("\r\n");
        req.push_str(&body);
        stream.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        stream.flush().map_err(|e| e.to_string())?;
        read_response(&mut BufReader::new(stream))
    }
}

/// Read one HTTP/1.1 response: status, headers, and a body framed by
/// `Content-Length`, chunked, or the end of the connection.
pub fn read_response<R: BufRead>(r: &mut R) -> Result<(u16, Vec<u8>), String> {
    let status_line = read_line(r)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("not an HTTP status line: {:?}", truncate(&status_line)))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "content-length" {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {v:?}"))?,
            );
        } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(r)?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| format!("bad chunk size {size_hex:?}"))?;
            if size == 0 {
                break;
            }
            if body.len() + size > MAX_REPLY {
                return Err("reply too large".into());
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).map_err(|e| e.to_string())?;
            read_line(r)?;
        }
    } else if let Some(n) = length {
        if n > MAX_REPLY {
            return Err("reply too large".into());
        }
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
    } else {
        // Until the connection ends; a TLS peer that closes without
        // close_notify is the end too.
        let mut buf = [0u8; 16 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    body.extend_from_slice(&buf[..n]);
                    if body.len() > MAX_REPLY {
                        return Err("reply too large".into());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok((status, body))
}

fn read_line<R: BufRead>(r: &mut R) -> Result<String, String> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the connection closed before the reply ended".into());
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Escape raw control characters inside JSON strings (RouterOS sends them
/// unescaped, e.g. in DHCP host names), so that the reply parses.
pub fn escape_controls(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            } else if b < 0x20 {
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                continue;
            }
        } else if b == b'"' {
            in_string = true;
        }
        out.push(b);
    }
    out
}

/// Decode a reply body: empty is `null`; JSON otherwise, leniently.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&escape_controls(body)).map_err(|e| format!("not JSON: {e}"))
}

/// The typed error of a reply with status >= 400.
pub fn status_error(method: &str, path: &str, status: u16, body: &[u8]) -> RestError {
    let v = decode(body).unwrap_or(Value::Null);
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    RestError::Status {
        method: method.into(),
        path: path.into(),
        status,
        message: text("message").unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect()),
        detail: text("detail"),
    }
}

impl Transport for Https {
    fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, RestError> {
        let (status, reply) = self
            .exchange(method, path, body)
            .map_err(|reason| RestError::Unreachable {
                method: method.into(),
                path: path.into(),
                addr: self.addr.to_string(),
                reason,
            })?;
        if status >= 400 {
            return Err(status_error(method, path, status, &reply));
        }
        decode(&reply).map_err(|reason| RestError::BadReply {
            method: method.into(),
            path: path.into(),
            reason,
        })
    }
}

/// A value as RouterOS means it: a string (anything else stringified).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => v.to_string(),
    }
}

/// One row of a reply.
fn row(v: &Value) -> Option<RosRow> {
    let obj = v.as_object()?;
    let id = obj.get(".id").map(text)?;
    let props = obj
        .iter()
        .filter(|(k, _)| k.as_str() != ".id")
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    Some(RosRow { id, props })
}

/// The REST verbs Warren uses, over a [`Transport`], counting writes.
pub struct Client {
    t: Box<dyn Transport>,
    writes: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("writes", &self.writes)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(t: Box<dyn Transport>) -> Client {
        Client { t, writes: 0 }
    }

    /// Writes that succeeded.
    pub fn writes(&self) -> usize {
        self.writes
    }

    fn bad(method: &str, path: &str, reason: &str) -> RestError {
        RestError::BadReply {
            method: method.into(),
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// `GET /rest/<menu>`: every row, in the router's order.
    pub fn list(&mut self, menu: &str) -> Result<Vec<RosRow>, RestError> {
        let v = self.t.request("GET", menu, None)?;
        let Value::Array(items) = v else {
            return Err(Self::bad("GET", menu, "expected a JSON array"));
        };
        items
            .iter()
            .map(|i| row(i).ok_or_else(|| Self::bad("GET", menu, "a row without .id")))
            .collect()
    }

    /// `GET /rest/<path>` of a singleton (`system/identity`).
    pub fn get(&mut self, path: &str) -> Result<Value, RestError> {
        self.t.request("GET", path, None)
    }

    /// `PUT /rest/<menu>`: create a row; its new `.id`.
    pub fn create(
        &mut self,
        menu: &str,
        props: &BTreeMap<String, String>,
        before: Option<&str>,
    ) -> Result<String, RestError> {
        let mut body = serde_json::Map::new();
        for (k, v) in props {
            body.insert(k.clone(), Value::String(v.clone()));
        }
        if let Some(b) = before {
            body.insert("place-before".into(), Value::String(b.into()));
        }
        let v = self.t.request("PUT", menu, Some(&Value::Object(body)))?;
        self.writes += 1;
        v.get(".id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Self::bad("PUT", menu, "the created row has no .id"))
    }

    /// `PATCH /rest/<menu>/<id>`.
    pub fn update(
        &mut self,
        menu: &str,
        id: &str,
        props: &BTreeMap<String, String>,
    ) -> Result<(), RestError> {
        let body: serde_json::Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.t
            .request("PATCH", &format!("{menu}/{id}"), Some(&Value::Object(body)))?;
        self.writes += 1;
        Ok(())
    }

    /// `DELETE /rest/<menu>/<id>`.
    pub fn delete(&mut self, menu: &str, id: &str) -> Result<(), RestError> {
        self.t.request("DELETE", &format!("{menu}/{id}"), None)?;
        self.writes += 1;
        Ok(())
    }

    /// `POST /rest/<path>`: a command; `mutating` ones count as writes.
    pub fn command(&mut self, path: &str, body: &Value, mutating: bool) -> Result<Value, RestError> {
        let v = self.t.request("POST", path, Some(body))?;
        if mutating {
            self.writes += 1;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_framed_by_length_chunks_or_end() {
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]trailing";
        assert_eq!(read_response(&mut r).unwrap(), (200, b"[]".to_vec()));
        let mut r: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[{}\r\n1;x=y\r\n]\r\n0\r\n\r\n";
        assert_eq!(read_response(&mut r).unwrap(), (200, b"[{}]".to_vec()));
        let mut r: &[u8] = b"HTTP/1.0 404 Not Found\r\n\r\n{\"error\":404}";
        assert_eq!(read_response(&mut r).unwrap(), (404, b"{\"error\":404}".to_vec()));
        for bad in [
            &b""[..],
            b"SSH-2.0-x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab",
        ] {
            let mut r = bad;
            assert!(read_response(&mut r).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn raw_control_characters_in_strings_are_tolerated() {
        let v = decode(b"[{\".id\":\"*1\",\"host-name\":\"a\x1bb\ttab\"}]\n").unwrap();
        assert_eq!(v[0]["host-name"], "a\u{1b}b\ttab");
        assert_eq!(decode(b"").unwrap(), Value::Null);
        assert!(decode(b"{nope").is_err());
        assert_eq!(row(&v[0]).unwrap().id, "*1");
    }

    #[test]
    fn errors_carry_status_message_and_detail() {
        let e = status_error(
            "PUT",
            "ip/route",
            400,
            br#"{"error":400,"message":"Bad Request","detail":"input does not match any value of routing-table"}"#,
        );
        assert_eq!(
            e.to_string(),
            "PUT /rest/ip/route: HTTP 400 Bad Request: input does not match any value of routing-table"
        );
        let e = status_error("GET", "x/*9", 404, br#"{"error":404,"message":"Not Found"}"#);
        assert_eq!(e.to_string(), "GET /rest/x/*9: HTTP 404 Not Found");
        assert!(!e.unreachable());
    }

    #[test]
    fn the_live_transport_pins_the_certificate_over_real_tls() {
        use std::sync::Arc;
        let c = rcgen::generate_simple_self_signed(vec!["router".into()]).unwrap();
        let der = c.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(c.key_pair.serialize_der()).unwrap();
        let server =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![der.clone()], key)
                .unwrap();
        let server = Arc::new(server);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let srv = server.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (tcp, _) = listener.accept().unwrap();
                let conn = rustls::ServerConnection::new(srv.clone()).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut buf = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(1) => head.push(buf[0]),
                        _ => break,
                    }
                }
                if head.is_empty() {
                    continue;
                }
                seen.push(String::from_utf8_lossy(&head).to_string());
                let body = br#"{"name":"MikroTik"}"#;
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                let _ = s.write_all(body);
                s.conn.send_close_notify();
                let _ = s.flush();
            }
            seen
        });
        let access = |fp: String| RosAccess {
            address: "127.0.0.1".parse().unwrap(),
            port,
            user: "warren".into(),
            fingerprint: fp,
        };
        let mut wrong = Https::new(&access("ab".repeat(32)), "s3cret").unwrap();
        let e = wrong.request("GET", "system/identity", None).unwrap_err();
        assert!(e.unreachable(), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("pins {}", "ab".repeat(32))), "{msg}");
        assert!(msg.contains(&tls::fingerprint(der.as_ref())), "{msg}");
        assert!(!msg.contains("s3cret"));

        let mut right = Https::new(&access(tls::fingerprint(der.as_ref())), "s3cret").unwrap();
        assert!(!format!("{right:?}").contains("s3cret"));
        let v = right.request("GET", "system/identity", None).unwrap();
        assert_eq!(v["name"], "MikroTik");
        let seen = handle.join().unwrap();
        let req = seen.last().unwrap();
        assert!(req.starts_with("GET /rest/system/identity HTTP/1.1\r\n"), "{req}");
        let auth = base64::engine::general_purpose::STANDARD.encode("warren:s3cret");
        assert!(req.contains(&format!("Authorization: Basic {auth}\r\n")), "{req}");
    }
}
