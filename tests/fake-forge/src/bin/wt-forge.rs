//! `wt-forge`: the fake forge as a process, for the namespace lab.
//!
//! ```text
//! wt-forge --kind github|gitea --listen ADDR:PORT --token T [--bot-login L]
//! ```
//! Prints `ready <url>` (the API root a client is configured with) on stdout
//! once listening. Control calls (no auth): `GET /_fake/state`,
//! `POST /_fake/fail {"status":429,"count":1,"retry_after":1}`,
//! `POST /_fake/delete-comment {"id":N}`, `POST /_fake/users {"login","token"}`,
//! `POST /_fake/comments {"repo","issue","login","body"}`,
//! `POST /_fake/body-limit {"limit":N|null}`, `POST /_fake/ignore-paging {"ignore":true}`.

use anyhow::Context as _;
use clap::Parser;
use std::io::Write as _;
use warren_fake_forge::{Dialect, FakeForge};

/// A test-only fake of GitHub's or Gitea's REST API. Not a forge.
#[derive(Debug, Parser)]
#[command(name = "wt-forge")]
struct Args {
    /// Which dialect: github or gitea.
    #[arg(long)]
    kind: String,
    /// Address to listen on (127.0.0.1:0 picks a port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The bot user's token.
    #[arg(long)]
    token: String,
    /// The bot user's login.
    #[arg(long, default_value = "warren-bot")]
    bot_login: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dialect: Dialect = args.kind.parse()?;
    let forge = FakeForge::start(dialect, &args.listen)?;
    forge
        .add_user(&args.bot_login, &args.token)
        .context("the bot user")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", forge.api_url)?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}
