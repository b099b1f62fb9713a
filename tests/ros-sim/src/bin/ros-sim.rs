//! `ros-sim`: a test-only RouterOS v7 REST simulator (see the crate docs).
//!
//! ```text
//! ros-sim --listen ADDR:PORT --cert-dir DIR --user NAME:PASSWORD [--user ...]
//!         --control SOCKET_PATH [--interfaces eth0,br-lan,...]
//!         [--defconf [--lan IF] [--wan IF]] [--kernel]
//! ```
//! Prints `ready <fingerprint>` once listening; logs to stderr.

use anyhow::{bail, Context as _};
use clap::Parser;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use warren_ros_sim::{defconf, router::Router, server, sim::Sim};

/// A test-only RouterOS v7 REST simulator. Not RouterOS.
#[derive(Debug, Parser)]
#[command(name = "ros-sim")]
struct Cli {
    /// Address and port of the HTTPS REST API.
    #[arg(long)]
    listen: String,
    /// Where the self-signed certificate lives (created when absent).
    #[arg(long)]
    cert_dir: PathBuf,
    /// A RouterOS user, NAME:PASSWORD (repeatable).
    #[arg(long = "user", required = true)]
    users: Vec<String>,
    /// Unix socket of the control protocol.
    #[arg(long)]
    control: PathBuf,
    /// Ethernet/bridge interfaces (default: the links of this namespace).
    #[arg(long, value_delimiter = ',')]
    interfaces: Option<Vec<String>>,
    /// Seed a home MikroTik's default configuration.
    #[arg(long)]
    defconf: bool,
    /// The LAN bridge for defconf.
    #[arg(long, default_value = "br-lan", requires = "defconf")]
    lan: String,
    /// The WAN interface for defconf.
    #[arg(long, default_value = "eth0", requires = "defconf")]
    wan: String,
    /// Project the configuration onto this namespace's kernel.
    #[arg(long)]
    kernel: bool,
}

fn links() -> anyhow::Result<Vec<String>> {
    let out = std::process::Command::new("ip")
        .args(["-j", "link"])
        .output()
        .context("running ip -j link")?;
    if !out.status.success() {
        bail!(
            "ip -j link failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing ip -j link")?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.get("ifname").and_then(|n| n.as_str()))
                .filter(|n| *n != "lo")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

fn control(stream: UnixStream, sim: Arc<Mutex<Sim>>) -> anyhow::Result<()> {
    let mut w = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = {
            let mut s = sim
                .lock()
                .map_err(|_| anyhow::anyhow!("simulator state poisoned"))?;
            s.control(&line)
        };
        writeln!(w, "{reply}")?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut users = Vec::new();
    for u in &cli.users {
        let Some((n, p)) = u.split_once(':') else {
            bail!("--user wants NAME:PASSWORD, got {u:?}")
        };
        users.push((n.to_string(), p.to_string()));
    }
    let interfaces = match cli.interfaces {
        Some(i) => i,
        None => links()?,
    };
    let mut router = Router::new(&interfaces);
    if cli.defconf {
        for i in [&cli.lan, &cli.wan] {
            if !interfaces.contains(i) {
                eprintln!(
                    "ros-sim: warning: defconf interface {i} is not among the interfaces {interfaces:?}"
                );
            }
        }
        defconf::seed(&mut router, &cli.lan, &cli.wan);
    }
    let (cert, key, fp) = server::load_or_create_cert(&cli.cert_dir)?;
    let tls = server::tls_config(cert, key)?;
    let mut sim = Sim::new(router, users, cli.kernel);
    sim.sync();
    let sim = Arc::new(Mutex::new(sim));

    if cli.control.exists() {
        std::fs::remove_file(&cli.control)
            .with_context(|| format!("removing stale {}", cli.control.display()))?;
    }
    let ctl =
        UnixListener::bind(&cli.control).with_context(|| format!("binding {}", cli.control.display()))?;
    let listener = TcpListener::bind(&cli.listen).with_context(|| format!("listening on {}", cli.listen))?;
    {
        let sim = sim.clone();
        std::thread::spawn(move || {
            for s in ctl.incoming() {
                let Ok(s) = s else { continue };
                let sim = sim.clone();
                std::thread::spawn(move || {
                    if let Err(e) = control(s, sim) {
                        eprintln!("ros-sim: control: {e:#}");
                    }
                });
            }
        });
    }
    println!("ready {fp}");
    std::io::stdout().flush()?;
    eprintln!(
        "ros-sim: listening on {} (control {})",
        cli.listen,
        cli.control.display()
    );
    server::serve(listener, tls, sim);
    Ok(())
}
