//! Where an endpoint may point. An endpoint URL must be `https://` (unless HTTP is allowed, for
//! tests and local receivers), carry no credentials, and name no host that is, or resolves to,
//! a loopback, private, link-local, shared, unspecified, multicast or cloud-metadata address
//! (unless private destinations are allowed). The check runs when the endpoint is created and
//! again before every send on the addresses DNS gives then; the sender connects to the checked
//! address only (pinned), so a DNS answer that changes between the check and the connection
//! (rebinding) cannot reach a forbidden address. Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use url::Url;

/// Connect and read timeout of a delivery.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest endpoint URL.
pub const MAX_URL_LEN: usize = 2_048;
/// Hosts that name a cloud metadata service without being an address.
const METADATA_HOSTS: [&str; 2] = ["metadata.google.internal", "metadata"];

/// What the operator allows beyond the default (`--webhook-allow-http`,
/// `--webhook-allow-private`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow_http: bool,
    pub allow_private: bool,
}

/// Why a URL or an address is refused; the text goes into the API's 400 after the URL.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("is not a valid URL")]
    Invalid,
    #[error("must use https")]
    NotHttps,
    #[error("must not contain credentials")]
    Credentials,
    #[error("is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("points at a loopback, private, link-local or metadata address")]
    Private,
    #[error("does not resolve")]
    Unresolved,
}

/// Whether an address is one an endpoint may not reach without `allow_private`.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7: unique local (AWS's metadata fd00:ec2::254 among them).
                || (seg[0] & 0xfe00) == 0xfc00
                // fe80::/10: link-local.
                || (seg[0] & 0xffc0) == 0xfe80
                // 64:ff9b::/96: NAT64, which reaches the IPv4 address in its low 32 bits.
                || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0; 4] && {
                    let v4 = Ipv4Addr::new(
                        (seg[6] >> 8) as u8,
                        seg[6] as u8,
                        (seg[7] >> 8) as u8,
                        seg[7] as u8,
                    );
                    forbidden_v4(v4)
                })
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        // 169.254/16, the metadata address 169.254.169.254 among them.
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        // 100.64/10: carrier-grade NAT, "shared" space inside providers' networks.
        || (a == 100 && (64..128).contains(&b))
        // 0/8: "this network".
        || a == 0
}

/// The syntactic checks, and the address checks of a host that is an address literal.
pub fn check_url(raw: &str, policy: Policy) -> Result<Url, Refusal> {
    if raw.len() > MAX_URL_LEN {
        return Err(Refusal::TooLong);
    }
    let url = Url::parse(raw).map_err(|_| Refusal::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err(Refusal::NotHttps),
        _ => return Err(Refusal::Invalid),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Credentials);
    }
    let forbidden = match url.host().ok_or(Refusal::Invalid)? {
        url::Host::Ipv4(ip) => is_forbidden(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => is_forbidden(IpAddr::V6(ip)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost"
                || name.ends_with(".localhost")
                || METADATA_HOSTS.contains(&name.as_str())
        }
    };
    if forbidden && !policy.allow_private {
        return Err(Refusal::Private);
    }
    Ok(url)
}

/// The addresses to connect to for `url`, resolved now and checked: every address DNS gives
/// must be allowed (one forbidden answer refuses the lot, so a name cannot mix a public address
/// with a private one and win on the retry). The sender connects to these only.
pub async fn resolve(url: &Url, policy: Policy) -> Result<Vec<SocketAddr>, Refusal> {
    let port = url.port_or_known_default().ok_or(Refusal::Invalid)?;
    let addrs: Vec<SocketAddr> = match url.host().ok_or(Refusal::Invalid)? {
        url::Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        url::Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        url::Host::Domain(name) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| Refusal::Unresolved)?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Refusal::Unresolved);
    }
    if !policy.allow_private && addrs.iter().any(|a| is_forbidden(a.ip())) {
        return Err(Refusal::Private);
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy {
        allow_http: false,
        allow_private: false,
    };

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:2800:220:1::1",
            "100.128.0.1",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_refused_for_their_reason() {
        assert!(check_url("https://example.com/hook", STRICT).is_ok());
        assert_eq!(
            check_url("http://example.com/hook", STRICT),
            Err(Refusal::NotHttps)
        );
        assert_eq!(
            check_url("ftp://example.com/", STRICT),
            Err(Refusal::Invalid)
        );
        assert_eq!(check_url("not a url", STRICT), Err(Refusal::Invalid));
        assert_eq!(
            check_url("https://u:p@example.com/", STRICT),
            Err(Refusal::Credentials)
        );
        for url in [
            "https://127.0.0.1/",
            "https://[::1]:8443/",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/",
            "https://api.localhost./",
            "https://metadata.google.internal/",
            "https://10.0.0.1/",
            // The parser normalises these spellings to 127.0.0.1.
            "https://2130706433/",
            "https://0x7f.1/",
        ] {
            assert_eq!(check_url(url, STRICT), Err(Refusal::Private), "{url}");
        }
        let open = Policy {
            allow_http: true,
            allow_private: true,
        };
        assert!(check_url("http://127.0.0.1:9/", open).is_ok());
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check_url(&long, STRICT), Err(Refusal::TooLong));
    }

    #[tokio::test]
    async fn resolution_is_checked_and_gives_the_addresses_to_pin() {
        let url = Url::parse("https://localhost:8443/").unwrap();
        assert_eq!(resolve(&url, STRICT).await, Err(Refusal::Private));
        let open = Policy {
            allow_http: true,
            allow_private: true,
        };
        let addrs = resolve(&url, open).await.unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.port() == 8443 && a.ip().is_loopback())
        );
        let literal = Url::parse("https://[fe80::1]/").unwrap();
        assert_eq!(resolve(&literal, STRICT).await, Err(Refusal::Private));
    }
}
