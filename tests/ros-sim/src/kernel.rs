//! Projection of the simulator's configuration onto the Linux network
//! namespace it runs in (FOUNDATION STUB).

use crate::db::Db;

/// What the namespace's kernel must hold for `db` (FOUNDATION STUB).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kernel {}

/// Derive the kernel configuration (pure).
pub fn render(db: &Db) -> Kernel {
    let _ = db;
    Kernel {}
}

pub fn sync(db:&Db)->anyhow::Result<()>{let _=db;Ok(())}
