//! `wt-net`: a tiny std-only TCP tool for the namespace lab (`warren_tests::lab`).
//! Every line it prints on stdout is meant to be parsed; diagnostics go to stderr.
//!
//! ```text
//! wt-net listen PORT                 prints "listening ADDR"; then, per connection, "accepted IP:PORT".
//!                                    Each client first receives "peer IP:PORT\n", then its lines echoed.
//! wt-net connect ADDR PORT TIMEOUT_MS connects (with timeout), prints the first line it receives, exit 0;
//!                                    exit 1 with a message on stderr on any failure.
//! wt-net hold ADDR PORT [TIMEOUT_MS] connects, prints the "peer ..." line, then every 200 ms sends
//!                                    "ping N" and expects it echoed within TIMEOUT_MS (default 2000),
//!                                    printing "alive N"; exits 1 on the first failure.
//! wt-net sink PORT                   prints "listening ADDR"; per connection reads to EOF, replies
//!                                    "received N\n" and prints "received N from IP:PORT".
//! wt-net send ADDR PORT BYTES        sends BYTES bytes to a sink, waits for its "received N", prints
//!                                    "sent BYTES bytes in MICROS us"; exit 1 on failure or short count.
//! wt-net udp-echo PORT               UDP: prints "listening ADDR"; answers each datagram with
//!                                    "peer IP:PORT" (its sender as seen here).
//! wt-net udp-ask ADDR PORT TIMEOUT_MS UDP: sends a datagram every 200 ms until one is answered,
//!                                    prints the answer, exit 0; exit 1 when TIMEOUT_MS passes.
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["listen", port] => num(port).and_then(listen),
        ["connect", addr, port, ms] => num(port).and_then(|p| connect(addr, p, millis(ms)?)),
        ["hold", addr, port] => num(port).and_then(|p| hold(addr, p, Duration::from_millis(2000))),
        ["hold", addr, port, ms] => num(port).and_then(|p| hold(addr, p, millis(ms)?)),
        ["sink", port] => num(port).and_then(sink),
        ["send", addr, port, bytes] => num(port).and_then(|p| send(addr, p, num(bytes)?)),
        ["udp-echo", port] => num(port).and_then(udp_echo),
        ["udp-ask", addr, port, ms] => num(port).and_then(|p| udp_ask(addr, p, millis(ms)?)),
        _ => Err(
            "usage: wt-net listen PORT | connect ADDR PORT TIMEOUT_MS | hold ADDR PORT [TIMEOUT_MS] \
                  | sink PORT | send ADDR PORT BYTES | udp-echo PORT | udp-ask ADDR PORT TIMEOUT_MS"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wt-net: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num<T: std::str::FromStr>(s: &str) -> Res<T> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn millis(s: &str) -> Res<Duration> {
    num(s).map(Duration::from_millis)
}

/// Print one line on stdout and flush it at once (stdout is a pipe).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn bind(port: u16) -> Res<TcpListener> {
    let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind port {port}: {e}"))?;
    let local = l.local_addr().map_err(|e| e.to_string())?;
    say(&format!("listening {local}"));
    Ok(l)
}

fn dial(addr: &str, port: u16, timeout: Duration) -> Res<TcpStream> {
    let target: SocketAddr = (addr, port)
        .to_socket_addrs()
        .map_err(|e| format!("{addr}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}:{port}: no address"))?;
    TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect {target}: {e}"))
}

/// Read one line (without its newline); EOF is an error.
fn read_line(r: &mut impl BufRead, what: &str) -> Res<String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => Err(format!("{what}: connection closed")),
        Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_string()),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn listen(port: u16) -> Res<()> {
    let l = bind(port)?;
    for stream in l.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || echo(stream));
    }
    Ok(())
}

fn echo(mut stream: TcpStream) {
    let Ok(peer) = stream.peer_addr() else { return };
    say(&format!("accepted {peer}"));
    if writeln!(stream, "peer {peer}").is_err() {
        return;
    }
    let Ok(read_half) = stream.try_clone() else { return };
    for line in BufReader::new(read_half).lines() {
        let Ok(line) = line else { return };
        if writeln!(stream, "{line}").is_err() {
            return;
        }
    }
}

fn connect(addr: &str, port: u16, timeout: Duration) -> Res<()> {
    let start = Instant::now();
    let stream = dial(addr, port, timeout)?;
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    let line = read_line(&mut BufReader::new(stream), "reading the first line")?;
    say(&line);
    Ok(())
}

fn hold(addr: &str, port: u16, timeout: Duration) -> Res<()> {
    let mut stream = dial(addr, port, Duration::from_secs(3))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    say(&read_line(&mut reader, "reading the peer line")?);
    for n in 1u64.. {
        let ping = format!("ping {n}");
        writeln!(stream, "{ping}").map_err(|e| format!("sending {ping}: {e}"))?;
        let back = read_line(&mut reader, &format!("waiting for the echo of {ping}"))?;
        if back != ping {
            return Err(format!("sent {ping:?}, got back {back:?}"));
        }
        say(&format!("alive {n}"));
        thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn sink(port: u16) -> Res<()> {
    let l = bind(port)?;
    for stream in l.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || drain(stream));
    }
    Ok(())
}

fn drain(mut stream: TcpStream) {
    let Ok(peer) = stream.peer_addr() else { return };
    let mut buf = vec![0u8; 1 << 16];
    let mut total: u64 = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(_) => return,
        }
    }
    let _ = writeln!(stream, "received {total}");
    say(&format!("received {total} from {peer}"));
}

fn send(addr: &str, port: u16, bytes: u64) -> Res<()> {
    let mut stream = dial(addr, port, Duration::from_secs(5))?;
    let io_timeout = Some(Duration::from_secs(30));
    stream.set_write_timeout(io_timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(io_timeout).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let buf = vec![0x5au8; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        stream.write_all(&buf[..n]).map_err(|e| format!("sending: {e}"))?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let reply = read_line(&mut BufReader::new(&stream), "waiting for the sink's count")?;
    let elapsed = start.elapsed();
    if reply != format!("received {bytes}") {
        return Err(format!("sent {bytes} bytes, sink replied {reply:?}"));
    }
    say(&format!("sent {bytes} bytes in {} us", elapsed.as_micros()));
    Ok(())
}

fn udp_echo(port: u16) -> Res<()> {
    let s = std::net::UdpSocket::bind(("0.0.0.0", port)).map_err(|e| format!("bind udp {port}: {e}"))?;
    say(&format!(
        "listening {}",
        s.local_addr().map_err(|e| e.to_string())?
    ));
    let mut buf = [0u8; 1500];
    loop {
        let (_, from) = s.recv_from(&mut buf).map_err(|e| e.to_string())?;
        let _ = s.send_to(format!("peer {from}").as_bytes(), from);
    }
}

fn udp_ask(addr: &str, port: u16, timeout: Duration) -> Res<()> {
    let s = std::net::UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let until = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        s.send_to(b"hi", (addr, port))
            .map_err(|e| format!("send to {addr}:{port}: {e}"))?;
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            say(&String::from_utf8_lossy(&buf[..n]));
            return Ok(());
        }
    }
    Err(format!("no answer from {addr}:{port} within {timeout:?}"))
}
