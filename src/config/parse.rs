//! Parsers for upstream's textual setting formats. Each returns a message
//! that completes "<FIELD>: …" on one line.

use std::net::{IpAddr, SocketAddr};

use crate::core::names::{self, NameError};

/// Splits a comma-separated list, trimming blanks and dropping empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn parse_int(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| format!("{s:?} is not an integer"))
}

pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

/// One entry of `DNS_ZONES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    pub parent_zone: String,
    pub load_balanced_zone: String,
    pub neg_ttl: i64,
}

/// Parses `parent:zone:negTTL;parent2:zone2:negTTL` (exactly three parts
/// each, integer negTTL), as upstream. Names are validated by the caller.
pub fn parse_dns_zones(s: &str) -> Result<Vec<ZoneSpec>, String> {
    let mut out = Vec::new();
    for entry in s.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let [parent, zone, ttl] = parts.as_slice() else {
            return Err(format!(
                "{entry:?} must have exactly three parts, parentZone:loadBalancedZone:negTTL"
            ));
        };
        let neg_ttl = ttl
            .parse::<i64>()
            .map_err(|_| format!("{entry:?}: negTTL {ttl:?} is not an integer"))?;
        out.push(ZoneSpec {
            parent_zone: parent.to_string(),
            load_balanced_zone: zone.to_string(),
            neg_ttl,
        });
    }
    Ok(out)
}

/// An edge DNS server as configured: host (IP or name) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeServer {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for EdgeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => write!(f, "[{}]:{}", self.host, self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Parses `host[:port]`: an IPv4 address, `[IPv6]`, or an RFC 1123 host name;
/// port 53 when omitted.
pub fn parse_edge_server(s: &str) -> Result<EdgeServer, String> {
    let s = s.trim();
    let bad_port = |p: &str| format!("{s:?}: port {p:?} is not a number in 1..=65535");
    let port_of = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad_port(p)),
        Ok(n) => Ok(n),
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']' after an IPv6 address"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => port_of(p)?,
            None if tail.is_empty() => 53,
            None => return Err(format!("{s:?} is not host[:port]")),
        };
        h.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{s:?}: {h:?} is not an IPv6 address"))?;
        (h.to_string(), port)
    } else if s.parse::<std::net::Ipv6Addr>().is_ok() {
        (s.to_string(), 53)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), port_of(p)?),
            None => (s.to_string(), 53),
        }
    };
    if host.parse::<IpAddr>().is_err() {
        names::validate_dns_name(&host).map_err(|e: NameError| format!("host {host:?} {e}"))?;
    }
    Ok(EdgeServer {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// A DNS peer address: `ip:port`, `[ipv6]:port`, or a bare IP (port 53).
pub fn parse_dns_address(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!("{s:?} is not an address (ip, ip:port or [ipv6]:port)"))
}

/// `host:port` for a listener; `:port` means every IPv4 address, as Go does.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not host:port (e.g. 0.0.0.0:8080)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones() {
        assert_eq!(
            parse_dns_zones("example.com:cloud.example.com:30;example.org:gslb.example.org:300"),
            Ok(vec![
                ZoneSpec {
                    parent_zone: "example.com".into(),
                    load_balanced_zone: "cloud.example.com".into(),
                    neg_ttl: 30
                },
                ZoneSpec {
                    parent_zone: "example.org".into(),
                    load_balanced_zone: "gslb.example.org".into(),
                    neg_ttl: 300
                },
            ])
        );
        assert_eq!(parse_dns_zones(""), Ok(vec![]));
        assert!(parse_dns_zones("example.com:cloud.example.com").is_err());
        assert!(parse_dns_zones("a:b:c:d").is_err());
        assert!(parse_dns_zones("example.com:cloud.example.com:thirty").is_err());
    }

    #[test]
    fn edge_servers() {
        let e = |h: &str, p| EdgeServer {
            host: h.into(),
            port: p,
        };
        assert_eq!(parse_edge_server("1.1.1.1"), Ok(e("1.1.1.1", 53)));
        assert_eq!(parse_edge_server("127.0.0.1:1053"), Ok(e("127.0.0.1", 1053)));
        assert_eq!(
            parse_edge_server("Edge.Example.com:5353"),
            Ok(e("edge.example.com", 5353))
        );
        assert_eq!(parse_edge_server("[::1]:5353"), Ok(e("::1", 5353)));
        assert_eq!(parse_edge_server("::1"), Ok(e("::1", 53)));
        assert!(parse_edge_server("1.1.1.1:0").is_err());
        assert!(parse_edge_server("1.1.1.1:99999").is_err());
        assert!(parse_edge_server("bad host:53").is_err());
        assert_eq!(e("::1", 53).to_string(), "[::1]:53");
    }

    #[test]
    fn scalars() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("maybe").is_err());
        assert_eq!(parse_int(" 42 "), Ok(42));
        assert!(parse_int("4x").is_err());
        assert_eq!(split_list(" eu, us ,,ap "), vec!["eu", "us", "ap"]);
        assert_eq!(parse_listen_address(":8080"), Ok("0.0.0.0:8080".parse().unwrap()));
        assert!(parse_listen_address("localhost").is_err());
        assert_eq!(
            parse_dns_address("127.0.0.12"),
            Ok("127.0.0.12:53".parse().unwrap())
        );
        assert_eq!(parse_dns_address("[::1]:5353"), Ok("[::1]:5353".parse().unwrap()));
    }
}
