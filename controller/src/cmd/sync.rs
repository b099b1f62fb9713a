//! `warren-controller sync [HOST]`: have the running service send HOST (or
//! every host) its current plan again, so the agent converges to it once
//! more: the way to repair a drifted host under `drift: report`. The
//! service holds its database, so the command leaves a request file in the
//! state directory (see `crate::serve::sync`) and then watches `status`
//! until the hosts are in sync (or `--timeout` passes; `--no-wait` skips).

use super::{usage, Outcome};
use crate::serve::status::{HostState, StatusView};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use warren_host::outln;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The host to sync; every host if omitted.
    host: Option<String>,
    #[arg(long, default_value = "/var/lib/warren-controller")]
    state_dir: PathBuf,
    /// Seconds to wait for the service and the hosts.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Only leave the request; do not wait.
    #[arg(long)]
    no_wait: bool,
}

pub fn run(args: Args) -> Outcome {
    let view = StatusView::load(&args.state_dir)?;
    let hosts: Vec<String> = match &args.host {
        Some(h) if !view.hosts.contains_key(h) => {
            let known: Vec<&str> = view.hosts.keys().map(String::as_str).collect();
            return Err(usage(format!("unknown host {h:?} (known: {})", known.join(", "))));
        }
        Some(h) => vec![h.clone()],
        None => view.hosts.keys().cloned().collect(),
    };
    let request = crate::serve::sync::request(&args.state_dir, &hosts)?;
    outln!("sync requested for {}", hosts.join(", "));
    if args.no_wait {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    wait_until("the service to pick up the request", deadline, || {
        Ok(!request.exists())
    })?;
    outln!("the service sent the plans again; waiting for the agents");
    let mut last: Vec<(String, HostState)> = vec![];
    wait_until("the hosts to be in sync", deadline, || {
        let view = StatusView::load(&args.state_dir)?;
        let states: Vec<(String, HostState)> = hosts
            .iter()
            .filter_map(|h| view.hosts.get(h).map(|v| (h.clone(), v.state)))
            .collect();
        if states != last {
            for (h, s) in &states {
                outln!("{h}: {}", s.label());
            }
            last = states.clone();
        }
        Ok(states.iter().all(|(_, s)| *s == HostState::InSync))
    })
}

/// Poll `done` every 200 ms until it holds or `deadline` passes.
fn wait_until(what: &str, deadline: Instant, mut done: impl FnMut() -> anyhow::Result<bool>) -> Outcome {
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(usage(format!(
                "timed out waiting for {what} (is `warren-controller serve` running with this --state-dir? `status` shows where each host stands)"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
