//! Agent sessions over SSH (warren-wire): the controller dials agents that
//! listen, and accepts agents that dial it. Filled in with the wire crate.

use super::{Event, Options};
use anyhow::Result;
use ed25519_dalek::SigningKey;
use tokio::sync::mpsc;

pub async fn start(_opts: &Options, _key: &SigningKey, _store: &super::store::Store, _tx: mpsc::Sender<Event>) -> Result<()> {
    Ok(())
}
