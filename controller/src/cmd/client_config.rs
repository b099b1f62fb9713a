//! `warren-controller client-config`: print a private VPN client's wg-quick
//! configuration, with the peers' public keys from the desired state, a keys
//! file, or what agents reported to the service. `--private-key FILE` fills
//! in the device's key (checked against its `public_key` in the YAML),
//! `--qr` prints the result as a terminal QR code (as `qrencode -t
//! ansiutf8` does) for a phone's WireGuard app, `--out FILE` writes it 0600.

use super::desired::{keybook, load};
use super::{usage, Outcome};
use anyhow::{Context, Result};
use base64::Engine;
use std::path::{Path, PathBuf};
use warren_compiler::KeyBook;
use warren_host::out;

/// What the compiler writes where the device's private key goes.
const PLACEHOLDER: &str = "<this device's private key>";

#[derive(clap::Args, Debug)]
pub struct Args {
    path: PathBuf,
    client: String,
    #[arg(long)]
    rev: Option<String>,
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Use the WireGuard keys agents reported to the service in this state dir.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The device's WireGuard private key (a `wg genkey` file), filled into
    /// the configuration; it must match the client's public_key.
    #[arg(long)]
    private_key: Option<PathBuf>,
    /// Print the configuration as a QR code (ANSI, UTF-8 half blocks) to scan
    /// with the WireGuard app, instead of as text.
    #[arg(long)]
    qr: bool,
    /// Write the configuration to FILE (mode 0600) instead of printing it.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let (_, cfg) = load(&args.path, args.rev.as_deref())?;
    let mut kb = keybook(&cfg, args.keys.as_deref())?;
    if let Some(dir) = &args.state_dir {
        reported_keys(&mut kb, dir)?;
    }
    let Some(mut text) = warren_compiler::client_config(&cfg, &kb, &args.client) else {
        return Err(usage(format!("no private VPN client {:?}", args.client)));
    };
    match &args.private_key {
        Some(file) => {
            let private = read_private_key(file)?;
            let want = cfg
                .private
                .as_ref()
                .and_then(|v| v.clients.iter().find(|c| c.name == args.client))
                .map(|c| c.public_key.0.clone())
                .unwrap_or_default();
            let have = public_of(&private);
            if B64.decode(want.trim()).ok() != B64.decode(&have).ok() {
                return Err(usage(format!(
                    "--private-key {}: its public key {have} is not client {:?}'s public_key {want} in warren.yaml",
                    file.display(),
                    args.client
                )));
            }
            text = text.replace(PLACEHOLDER, &B64.encode(private));
        }
        None if args.qr || args.out.is_some() => eprintln!(
            "note: the configuration holds a placeholder for the device's private key; pass --private-key FILE to fill it in"
        ),
        None => {}
    }
    if let Some(file) = &args.out {
        warren_host::fs::write_atomic(file, text.as_bytes())
            .with_context(|| format!("write {}", file.display()))?;
    }
    if args.qr {
        out!("{}", qr_ansi(&text)?);
    } else if args.out.is_none() {
        out!("{text}");
    }
    Ok(())
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A `wg genkey` file: one base64 line of 32 bytes.
fn read_private_key(file: &Path) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let bytes = B64
        .decode(text.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .with_context(|| format!("{}: not a WireGuard private key (wg genkey)", file.display()))?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn public_of(private: &[u8; 32]) -> String {
    let s = x25519_dalek::StaticSecret::from(*private);
    B64.encode(x25519_dalek::PublicKey::from(&s).as_bytes())
}

/// `text` as a QR code for a terminal, like `qrencode -t ansiutf8`: white
/// on black set explicitly (it scans in dark and light themes), two module
/// rows per line in UTF-8 half blocks, a quiet zone of 2 modules.
pub fn qr_ansi(text: &str) -> Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L)
        .context("the configuration does not fit in a QR code")?;
    let width = code.width();
    let colors = code.to_colors();
    const QUIET: usize = 2;
    let size = width + 2 * QUIET;
    // Light (true) outside the symbol and on light modules.
    let light = |x: usize, y: usize| -> bool {
        if x < QUIET || y < QUIET || x >= width + QUIET || y >= width + QUIET {
            return true;
        }
        colors
            .get((y - QUIET) * width + (x - QUIET))
            .is_none_or(|c| *c == qrcode::Color::Light)
    };
    let mut s = String::new();
    for y in (0..size).step_by(2) {
        s.push_str("\x1b[40m\x1b[37m");
        for x in 0..size {
            let top = light(x, y);
            let bottom = y + 1 >= size || light(x, y + 1);
            s.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        s.push_str("\x1b[0m\n");
    }
    Ok(s)
}

/// Add the WireGuard keys agents reported, from the service's `status.json`.
fn reported_keys(kb: &mut KeyBook, dir: &Path) -> Result<()> {
    for (host, iface, key) in crate::serve::status::reported_wireguard_keys(dir)? {
        kb.insert(&host, &iface, &key);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The modules back from [`qr_ansi`]'s text, decoded with rqrr.
    fn decode(ansi: &str) -> String {
        let rows: Vec<Vec<bool>> = ansi
            .lines()
            .flat_map(|l| {
                let l = l
                    .trim_start_matches("\x1b[40m\x1b[37m")
                    .trim_end_matches("\x1b[0m");
                let top: Vec<bool> = l.chars().map(|c| matches!(c, '█' | '▀')).collect();
                let bottom: Vec<bool> = l.chars().map(|c| matches!(c, '█' | '▄')).collect();
                [top, bottom]
            })
            .collect();
        let scale = 4;
        let (w, h) = (rows[0].len() * scale, rows.len() * scale);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            if rows[y / scale][x / scale] {
                255
            } else {
                0
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1);
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_qr_code_decodes_to_exactly_the_text() {
        let text = "# Warren private VPN client \"phone\"\n[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 192.168.17.69/24\nMTU = 1340\n\n[Peer]\nPublicKey = W7bsCVJFL4iC025jdIIUUsHbjXHCbhSZXpWCjPcbnmQ=\nEndpoint = 203.0.113.10:13131\nAllowedIPs = 192.168.17.1/32, 192.168.16.0/24\nPersistentKeepalive = 25\n";
        let qr = qr_ansi(text).unwrap();
        assert!(qr
            .lines()
            .all(|l| l.starts_with("\x1b[40m\x1b[37m") && l.ends_with("\x1b[0m")));
        assert_eq!(decode(&qr), text);
        assert!(
            qr_ansi(&"x".repeat(4000)).is_err(),
            "too long for a QR code is an error, not a panic"
        );
    }

    #[test]
    fn a_private_key_file_gives_its_public_key() {
        let dir = std::env::temp_dir().join(format!("warren-cc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("phone.key");
        std::fs::write(&f, "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n").unwrap();
        let k = read_private_key(&f).unwrap();
        assert_eq!(public_of(&k).len(), 44);
        std::fs::write(&f, "not a key\n").unwrap();
        assert!(read_private_key(&f).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
