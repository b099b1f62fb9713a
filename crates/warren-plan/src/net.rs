//! IPv4 addresses and prefixes, parsed strictly (Warren v1 is IPv4-only, like the seed).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 prefix `a.b.c.d/len`. The address may carry host bits (an interface
/// address); [`Ipv4Cidr::is_network`] tells whether it is a clean network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    /// The address, host bits included.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub len: u8,
}

impl Ipv4Cidr {
    /// `addr/len`, or `None` if `len` is over 32.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        (len <= 32).then_some(Ipv4Cidr { addr, len })
    }
    /// The single address `addr/32`.
    pub fn host(addr: Ipv4Addr) -> Self {
        Ipv4Cidr { addr, len: 32 }
    }
    /// The netmask as a number (`/24` → `0xffffff00`).
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }
    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    /// The same prefix with the host bits cleared.
    pub fn trunc(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: self.network(),
            len: self.len,
        }
    }
    /// The last address of the prefix (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
    /// Whether the address carries no host bits.
    pub fn is_network(&self) -> bool {
        self.addr == self.network()
    }
    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
    /// Whether all of `other` is inside this prefix.
    pub fn contains_net(&self, other: &Ipv4Cidr) -> bool {
        other.len >= self.len && self.contains(other.network())
    }
    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }
    /// Number of addresses usable by hosts (all for /31 and /32, RFC 3021).
    pub fn usable_hosts(&self) -> u64 {
        match self.len {
            32 => 1,
            31 => 2,
            l => (1u64 << (32 - u32::from(l))) - 2,
        }
    }
    /// Is `ip` a usable host address of this prefix (not network, not broadcast)?
    pub fn is_usable_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.len >= 31 || (ip != self.network() && ip != self.broadcast()))
    }
    /// The n-th usable host address (0-based), if any.
    pub fn nth_host(&self, n: u32) -> Option<Ipv4Addr> {
        let first: u64 = if self.len >= 31 { 0 } else { 1 };
        let idx = first + u64::from(n);
        if u64::from(n) >= self.usable_hosts() {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network()).wrapping_add(idx as u32)))
    }
    /// `0.0.0.0/0`.
    pub fn default_route() -> Self {
        Ipv4Cidr {
            addr: Ipv4Addr::UNSPECIFIED,
            len: 0,
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Why a string is not an `a.b.c.d/len` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// There is no `/len`.
    MissingLength,
    /// The part before `/` is not a dotted-quad IPv4 address.
    BadAddress,
    /// The part after `/` is not a number from 0 to 32.
    BadLength,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CidrError::MissingLength => "missing prefix length (write it as a.b.c.d/len)",
            CidrError::BadAddress => "not an IPv4 address",
            CidrError::BadLength => "prefix length must be a number from 0 to 32",
        })
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.trim().split_once('/').ok_or(CidrError::MissingLength)?;
        let addr = parse_ipv4(a).ok_or(CidrError::BadAddress)?;
        if l.is_empty() || !l.chars().all(|c| c.is_ascii_digit()) {
            return Err(CidrError::BadLength);
        }
        let len = l
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or(CidrError::BadLength)?;
        Ok(Ipv4Cidr { addr, len })
    }
}

/// Strict dotted-quad parsing (std rejects leading zeros and short forms already).
pub fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    Ipv4Addr::from_str(s.trim()).ok()
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e: CidrError| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parse_and_containment() {
        assert_eq!(c("10.0.18.0/30").nth_host(0), Some(Ipv4Addr::new(10, 0, 18, 1)));
        assert_eq!(c("10.0.18.0/30").nth_host(1), Some(Ipv4Addr::new(10, 0, 18, 2)));
        assert_eq!(c("10.0.18.0/30").nth_host(2), None);
        assert_eq!(c("10.0.18.0/31").nth_host(0), Some(Ipv4Addr::new(10, 0, 18, 0)));
        assert!(!c("10.0.18.1/30").is_network());
        assert!(c("192.168.16.0/24").overlaps(&c("192.168.0.0/16")));
        assert!(!c("192.168.16.0/24").overlaps(&c("192.168.17.0/24")));
        assert!(c("0.0.0.0/0").contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(!c("192.168.16.0/24").is_usable_host(Ipv4Addr::new(192, 168, 16, 255)));
        assert_eq!("1.2.3.4".parse::<Ipv4Cidr>(), Err(CidrError::MissingLength));
        assert_eq!("1.2.3.4/33".parse::<Ipv4Cidr>(), Err(CidrError::BadLength));
        assert_eq!("1.2.3/8".parse::<Ipv4Cidr>(), Err(CidrError::BadAddress));
        assert_eq!("01.2.3.4/8".parse::<Ipv4Cidr>(), Err(CidrError::BadAddress));
    }
}
