//! The HTTPS transport: a self-signed certificate (generated once into the
//! certificate directory), rustls with the ring provider, and a small
//! HTTP/1.1 server on std threads with keep-alive.

use crate::rest::{self, percent_decode, Request};
use crate::sim::Sim;
use anyhow::{bail, Context as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};
use std::io::{BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest request body accepted.
const MAX_BODY: usize = 16 << 20;

/// The certificate and key in `dir` (`cert.der`, `key.der`), created when
/// absent; writes `dir/fingerprint` (lowercase hex SHA-256 of the DER).
/// Returns (certificate DER, PKCS#8 key DER, fingerprint).
pub fn load_or_create_cert(dir: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (cp, kp) = (dir.join("cert.der"), dir.join("key.der"));
    if !cp.exists() || !kp.exists() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .context("generating the self-signed certificate")?;
        std::fs::write(&kp, ck.key_pair.serialize_der())
            .with_context(|| format!("writing {}", kp.display()))?;
        std::fs::write(&cp, ck.cert.der().as_ref()).with_context(|| format!("writing {}", cp.display()))?;
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).context("writing cert.pem")?;
    }
    let cert = std::fs::read(&cp).with_context(|| format!("reading {}", cp.display()))?;
    let key = std::fs::read(&kp).with_context(|| format!("reading {}", kp.display()))?;
    let fp = fingerprint(&cert);
    std::fs::write(dir.join("fingerprint"), format!("{fp}\n")).context("writing fingerprint")?;
    Ok((cert, key, fp))
}

/// Lowercase hex SHA-256 of a certificate's DER.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// A rustls server configuration (ring provider) for this certificate.
pub fn tls_config(cert: Vec<u8>, key: Vec<u8>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .context("TLS certificate")?;
    Ok(Arc::new(cfg))
}

/// Accept connections forever, one thread each.
pub fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, sim: Arc<Mutex<Sim>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (tls, sim) = (tls.clone(), sim.clone());
        std::thread::spawn(move || {
            if let Err(e) = connection(stream, tls, sim) {
                eprintln!("ros-sim: connection: {e:#}");
            }
        });
    }
}

fn connection(stream: TcpStream, tls: Arc<rustls::ServerConfig>, sim: Arc<Mutex<Sim>>) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.set_nodelay(true)?;
    let conn = rustls::ServerConnection::new(tls)?;
    let tls_stream = rustls::StreamOwned::new(conn, stream);
    let mut reader = BufReader::new(tls_stream);
    loop {
        let Some((req, close, expect)) = read_request(&mut reader)? else {
            return Ok(());
        };
        if expect {
            reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let req = req.with_body(&mut reader)?;
        let resp = {
            let mut sim = sim
                .lock()
                .map_err(|_| anyhow::anyhow!("simulator state poisoned"))?;
            rest::handle(&mut sim, &req)
        };
        let body = resp.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            resp.status,
            crate::error::reason(resp.status),
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        let w = reader.get_mut();
        w.write_all(head.as_bytes())?;
        w.write_all(body.as_bytes())?;
        w.flush()?;
        if close {
            w.conn.send_close_notify();
            let _ = w.flush();
            return Ok(());
        }
    }
}

/// A request whose body is still to be read.
struct Pending {
    req: Request,
    length: usize,
}

impl Pending {
    fn with_body<R: std::io::BufRead>(mut self, r: &mut R) -> anyhow::Result<Request> {
        let mut body = vec![0u8; self.length];
        r.read_exact(&mut body)?;
        self.req.body = body;
        Ok(self.req)
    }
}

fn read_request<R: std::io::BufRead>(r: &mut R) -> anyhow::Result<Option<(Pending, bool, bool)>> {
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
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("bad request line {line:?}");
    };
    let mut close = version == "HTTP/1.0";
    let (mut length, mut expect, mut auth) = (0usize, false, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            bail!("connection closed inside the headers");
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            bail!("bad header {h:?}")
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().context("content-length")?,
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "expect" => expect = value.eq_ignore_ascii_case("100-continue"),
            "transfer-encoding" => bail!("chunked request bodies are not supported"),
            "authorization" => auth = basic(value),
            _ => {}
        }
    }
    if length > MAX_BODY {
        bail!("request body too large");
    }
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
        auth,
        body: vec![],
    };
    Ok(Some((Pending { req, length }, close, expect)))
}

fn basic(value: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let b = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}
