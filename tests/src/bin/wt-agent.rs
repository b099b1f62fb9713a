//! A hostile agent for the fault tests: authenticates with a real agent's
//! identity key (read from its state directory), then sends what a
//! compromised agent might: a `Keys` with a lying identity and chosen
//! WireGuard keys, and optionally an oversized report. Prints how the session
//! ended.
//!
//! `wt-agent IDENTITY_KEY CONTROLLER_KEY ADDR HOST [--wg IFACE=KEY]... [--report-bytes N]`

use std::collections::BTreeMap;
use std::time::Duration;
use warren_wire::{Message, Outcome, Report};

fn main() {
    if let Err(e) = run() {
        eprintln!("wt-agent: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, controller, addr, host, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: wt-agent IDENTITY_KEY CONTROLLER_KEY ADDR HOST [--wg IFACE=KEY]... [--report-bytes N]"
                .into(),
        );
    };
    let seed = warren_host::secret::read(std::path::Path::new(key))
        .map_err(|e| e.to_string())?
        .ok_or("no identity key")?;
    let identity = ed25519_dalek::SigningKey::from_bytes(&seed);
    let controller = warren_wire::parse_public_key(controller).map_err(|e| e.to_string())?;
    let mut wg = BTreeMap::new();
    let mut report_bytes = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or("missing value")?;
        match a.as_str() {
            "--wg" => {
                let (i, k) = v.split_once('=').ok_or("--wg IFACE=KEY")?;
                wg.insert(i.to_string(), k.to_string());
            }
            "--report-bytes" => report_bytes = Some(v.parse::<usize>().map_err(|e| e.to_string())?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut c = warren_wire::dial(addr.as_str(), identity, controller)
            .await
            .map_err(|e| e.to_string())?;
        c.hello(host).await.map_err(|e| e.to_string())?;
        let keys = Message::Keys {
            identity: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostileHostileHostileHostileHostile0000 liar"
                .into(),
            wireguard: wg,
        };
        c.send(keys).await.map_err(|e| e.to_string())?;
        if let Some(n) = report_bytes {
            let r = Report {
                seq: 1,
                host: host.clone(),
                serial: None,
                commit: None,
                outcome: Outcome::Drift,
                message: "x".repeat(n),
                changes: vec![],
                at: 0,
            };
            if let Err(e) = c.send(Message::Report(Box::new(r))).await {
                println!("send failed: {e}");
            }
        }
        // Wait for the controller to close the session, or a quiet spell.
        let end = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                match c.recv().await {
                    Ok(Some(Message::Bye { reason })) => return format!("bye: {reason}"),
                    Ok(Some(_)) => continue,
                    Ok(None) => return "closed".to_string(),
                    Err(e) => return format!("error: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| "still open".to_string());
        println!("{end}");
        Ok(())
    })
}
