//! Validation: from the document as written to a resolved [`Config`], with a
//! precise diagnostic (file, line, column, message, hint) for everything wrong.
//! Every check here has a test with its exact message (see `tests/lints.rs`).
//!
//! `run` walks the document in sections, one module each, and each section
//! gets only what earlier sections resolved:
//!
//! | module | checks |
//! |---|---|
//! | `values` | one scalar: addresses, prefixes, ports, keys, names |
//! | `hosts` | each host on its own; one gateway, one router |
//! | `wan_vpn` | `wan_vpn`; the gateway's management ports |
//! | `private_vpn` | `private_vpn` and its clients |
//! | `networks` | routed networks do not overlap or contain the public address |
//! | `forwards` | `forwards`; each public port claimed once |
//! | `references` | pinned keys and `managed_by` name real things |
//!
//! Validation reports every problem it can, so a section still runs when an
//! earlier one failed, on whatever did resolve. It must not read files or
//! decide anything the compiler owns (nftables rules, MTUs, plan contents).

mod forwards;
mod hosts;
mod networks;
mod private_vpn;
mod references;
mod values;
mod wan_vpn;

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::model::{Config, Role};
use crate::schema::Document;

/// Default WireGuard overhead per layer: IPv6 outer header (40) + UDP (8) + WireGuard (32).
pub const WG_OVERHEAD: u16 = 80;

/// The validator's state: the file name diagnostics carry, and every
/// diagnostic so far. Sections only add to it, except the private VPN, which
/// sharpens the hint of a diagnostic it caused.
struct V<'a> {
    file: &'a str,
    diags: Diagnostics,
}

impl V<'_> {
    fn err(&mut self, code: &'static str, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::error(code, pos, msg))
    }
    fn warn(&mut self, code: &'static str, pos: Pos, msg: impl Into<String>) -> &mut Diagnostic {
        self.push(Diagnostic::warning(code, pos, msg))
    }
    fn push(&mut self, d: Diagnostic) -> &mut Diagnostic {
        self.diags.0.push(d.in_file(self.file));
        let last = self.diags.0.len() - 1;
        &mut self.diags.0[last]
    }
}

/// Validate a parsed document. Returns the resolved config when there is no
/// error (warnings may still be present), and every diagnostic found.
pub fn validate(doc: &Document, file: &str) -> (Option<Config>, Diagnostics) {
    let mut v = V {
        file,
        diags: Diagnostics::default(),
    };
    let cfg = run(&mut v, doc);
    let diags = v.diags.sorted();
    if diags.has_errors() {
        (None, diags)
    } else {
        (cfg, diags)
    }
}

/// Parse and validate YAML text.
pub fn load_str(text: &str, file: &str) -> (Option<Config>, Diagnostics) {
    match crate::load::parse_document(text, file) {
        Ok(doc) => validate(&doc, file),
        Err(d) => (None, Diagnostics(vec![*d])),
    }
}

/// Every section in order; the config only if none of them found an error.
fn run(v: &mut V, doc: &Document) -> Option<Config> {
    if doc.version.value != 1 {
        v.err(
            "unsupported-version",
            doc.version.at,
            format!("version {} is not supported", doc.version.value),
        )
        .with_hint("this Warren reads version: 1");
        return None;
    }
    let hosts = hosts::validate_hosts(v, &doc.hosts);
    let wan = wan_vpn::validate_wan_vpn(v, &doc.wan_vpn, &hosts);
    // The WAN VPN's ends, when they name hosts of the right role.
    let gateway = hosts.get(&wan.gateway).filter(|h| h.host.role == Role::Gateway);
    let router = hosts.get(&wan.router).filter(|h| h.host.role == Role::Router);
    if let Some(g) = gateway {
        wan_vpn::validate_management(v, g, &wan);
    }
    let private = doc
        .private_vpn
        .as_ref()
        .map(|p| private_vpn::validate_private_vpn(v, p, &hosts, &wan, gateway, router));
    networks::validate_networks(v, &wan, gateway, router, private.as_ref());
    let forwards = forwards::validate_forwards(v, &doc.forwards, &wan, gateway, router, private.as_ref());
    let private = private.and_then(|p| p.vpn);
    references::validate_references(v, &hosts, &wan.interface, private.as_ref());

    if v.diags.has_errors() {
        return None;
    }
    Some(Config {
        wan: wan.resolved()?,
        hosts: hosts.into_iter().map(|(k, h)| (k, h.host)).collect(),
        private,
        forwards,
    })
}
