//! The egress guard of request-style triggers (SSRF protection, argo-events #4030).
//!
//! A sensor's manifest — often filled from event data through parameters — decides where its `http`
//! trigger sends requests. Without a guard, anyone who can write a Sensor (or shape an event a
//! parameter copies into a URL) can make the sensor call the cloud metadata service and read node
//! credentials. So every address a request would go to is checked **after DNS resolution** (a host
//! name pointing at a metadata address is caught too), and again for literal IP URLs, which skip DNS.
//!
//! Rules are CIDRs, each `deny` or `allow`; the most specific rule containing the address decides
//! (a tie goes to `deny`), and an address no rule contains is allowed. The default rules deny
//! link-local IPv4 (169.254.0.0/16, which holds 169.254.169.254 of AWS, GCP and Azure), link-local
//! IPv6 (fe80::/10) and AWS's IPv6 metadata address (fd00:ec2::254). Loopback and private ranges stay
//! allowed so local setups work; operators add rules for the whole process with `--egress-deny` and
//! `--egress-allow` (e.g. deny 10.0.0.0/8 but allow 10.1.2.0/24).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// What a rule does with the addresses it contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Requests may go there.
    Allow,
    /// Requests may not go there.
    Deny,
}

/// An IPv4 or IPv6 network, e.g. `169.254.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("failed to parse CIDR `{text}`: {reason}")]
pub struct ParseCidrError {
    text: String,
    reason: &'static str,
}

impl Cidr {
    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let ((net, width), (addr, addr_width)) = (Self::bits(self.network), Self::bits(ip));
        if width != addr_width {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let shift = u32::from(width - self.prefix);
        (net >> shift) == (addr >> shift)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Cidr {
    type Err = ParseCidrError;

    /// `a.b.c.d/n`, `x:y::z/n`, or a bare address (a /32 or /128).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseCidrError {
            text: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (trimmed, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| err("not an IPv4 or IPv6 address"))?;
        let width = Self::bits(network).1;
        let prefix =
            match prefix {
                None => width,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= width).ok_or_else(|| {
                    err("the prefix length is not a number from 0 to 32 (IPv4) or 128 (IPv6)")
                })?,
            };
        let (bits, _) = Self::bits(network);
        let host_bits = u32::from(width - prefix);
        let masked = if host_bits >= 128 {
            0
        } else {
            (bits >> host_bits) << host_bits
        };
        if masked != bits {
            return Err(err(
                "the address has bits set after the prefix (did you mean the network address?)",
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A request's address was refused by the egress rules.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("refused to connect to {address} (host `{host}`): it is in {rule}, which the sensor's egress rules deny{hint}")]
pub struct EgressDenied {
    /// The host name (or literal address) of the URL.
    pub host: String,
    /// The address refused.
    pub address: IpAddr,
    /// The rule that denied it.
    pub rule: Cidr,
    hint: &'static str,
}

/// The process-wide egress rules of request-style triggers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPolicy {
    rules: Vec<(Cidr, Verdict)>,
}

/// Link-local IPv4 (cloud metadata 169.254.169.254), link-local IPv6, and AWS's IPv6 metadata address.
const DEFAULT_DENY: [&str; 3] = ["169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"];

impl Default for EgressPolicy {
    fn default() -> Self {
        let rules = DEFAULT_DENY
            .iter()
            .filter_map(|c| c.parse().ok())
            .map(|c| (c, Verdict::Deny))
            .collect();
        Self { rules }
    }
}

impl EgressPolicy {
    /// The default rules plus the operator's `deny` and `allow` CIDRs.
    pub fn with_rules(deny: &[Cidr], allow: &[Cidr]) -> Self {
        let mut policy = Self::default();
        policy.rules.extend(deny.iter().map(|c| (*c, Verdict::Deny)));
        policy.rules.extend(allow.iter().map(|c| (*c, Verdict::Allow)));
        policy
    }

    /// The verdict for `address`, and the rule that gave it (`None`: no rule contains it; allowed).
    pub fn verdict(&self, address: IpAddr) -> (Verdict, Option<Cidr>) {
        let mut best: Option<(Cidr, Verdict)> = None;
        for (cidr, verdict) in &self.rules {
            if !cidr.contains(address) {
                continue;
            }
            best = match best {
                Some((b, bv)) if b.prefix > cidr.prefix => Some((b, bv)),
                Some((b, Verdict::Deny)) if b.prefix == cidr.prefix => Some((b, Verdict::Deny)),
                _ => Some((*cidr, *verdict)),
            };
        }
        match best {
            Some((cidr, verdict)) => (verdict, Some(cidr)),
            None => (Verdict::Allow, None),
        }
    }

    /// `Ok` when requests to `address` (for `host`) are allowed.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), EgressDenied> {
        match self.verdict(address) {
            (Verdict::Deny, Some(rule)) => Err(EgressDenied {
                host: host.to_owned(),
                address,
                rule,
                hint: if DEFAULT_DENY.iter().any(|d| d.parse() == Ok(rule)) {
                    " by default (link-local and cloud metadata addresses); allow it with --egress-allow if this is intended"
                } else {
                    ""
                },
            }),
            _ => Ok(()),
        }
    }
}

/// A DNS resolver for reqwest that drops denied addresses, and fails when none is left, so a host
/// name cannot lead a request to a denied address. The check happens on the addresses the
/// connection will use, so a DNS answer that changes between check and connect cannot slip past.
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<EgressPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut denied = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        denied.get_or_insert(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), denied) {
                (true, Some(denied)) => Err(Box::new(denied) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// Which redirects a guarded client follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// Any origin (every hop still passes the egress rules).
    Any,
    /// Only the origin (scheme, host, port) of the request itself.
    Same,
}

/// Redirects a guarded client follows: at most 10, each to an allowed address. A redirect to a
/// literal IP never reaches the resolver, so it is checked here; a named host is checked when it
/// is resolved for the next hop. A 307/308 keeps the method and body, so an unchecked hop would
/// replay the request to wherever the redirect says.
fn redirect_policy(policy: Arc<EgressPolicy>, origin: Origin) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error(RedirectRefused("too many redirects (10)".to_owned()));
        }
        if let Err(denied) = check_literal(&policy, attempt.url()) {
            return attempt.error(denied);
        }
        if origin == Origin::Same {
            let first = attempt.previous().first().map(|u| u.origin());
            if first.as_ref() != Some(&attempt.url().origin()) {
                let to = attempt.url().origin().ascii_serialization();
                return attempt.error(RedirectRefused(format!(
                    "a redirect to another origin ({to}) would carry the trigger's secure headers there"
                )));
            }
        }
        attempt.follow()
    })
}

/// Why a redirect was not followed (the egress rules' refusals are [`EgressDenied`]).
#[derive(Debug, thiserror::Error)]
#[error("redirect refused: {0}")]
pub struct RedirectRefused(String);

/// The literal IP of `url`'s host, checked against `policy` (IPv4-mapped IPv6 addresses count as
/// their IPv4 address); a named host passes here.
fn check_literal(policy: &EgressPolicy, url: &reqwest::Url) -> Result<(), EgressDenied> {
    let host = url.host_str().unwrap_or_default();
    // An IPv6 literal is written in brackets; the URL parser has already normalised every IPv4
    // spelling (`0x7f.1`, `2130706433`) to dotted decimal.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(address) => policy.check(host, address),
        Err(_) => Ok(()),
    }
}

/// The HTTP clients of a sensor's request-style triggers, all under one egress policy.
#[derive(Clone)]
pub struct HttpClients {
    shared: reqwest::Client,
    policy: Arc<EgressPolicy>,
    /// The base URL of Slack's Web API (`--slack-api-url`).
    slack_api_url: Arc<str>,
}

impl HttpClients {
    /// A shared client whose DNS resolution enforces `policy`.
    pub fn new(policy: EgressPolicy) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let shared = Self::builder_for(&policy, Origin::Any).build()?;
        Ok(Self {
            shared,
            policy,
            slack_api_url: Arc::from(crate::triggers::slack::DEFAULT_API_URL),
        })
    }

    /// Sends the `slack` trigger's API calls to `url` instead of Slack's (a Sluice extension, for
    /// Slack-compatible servers, proxies and tests).
    pub fn with_slack_api_url(mut self, url: &str) -> Self {
        self.slack_api_url = Arc::from(url);
        self
    }

    /// The base URL of Slack's Web API.
    pub fn slack_api_url(&self) -> &str {
        &self.slack_api_url
    }

    fn builder_for(policy: &Arc<EgressPolicy>, origin: Origin) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone())))
            // A proxy from the environment (`HTTP_PROXY`, …, which a pod template could set) would
            // be sent the unresolved host, and the guard would never see where the request goes.
            .no_proxy()
            .redirect(redirect_policy(policy.clone(), origin))
    }

    /// A builder with the egress guard, for a trigger that needs its own client (custom TLS).
    pub fn builder(&self) -> reqwest::ClientBuilder {
        Self::builder_for(&self.policy, Origin::Any)
    }

    /// A builder with the egress guard whose client follows redirects within the request's
    /// origin only: for requests carrying secure headers, which reqwest would forward to any host
    /// a redirect names (it strips only `Authorization`, `Cookie` and their kin).
    pub fn same_origin_builder(&self) -> reqwest::ClientBuilder {
        Self::builder_for(&self.policy, Origin::Same)
    }

    /// `Ok` when `url` may be requested: a literal IP host (which skips DNS, and so the guarded
    /// resolver) is checked against the rules; a name is checked when the client resolves it.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), EgressDenied> {
        check_literal(&self.policy, url)
    }

    /// The client shared by triggers without their own TLS settings.
    pub fn shared(&self) -> &reqwest::Client {
        &self.shared
    }

    /// The rules, also checked against literal IP URLs (which skip DNS).
    pub fn policy(&self) -> &EgressPolicy {
        &self.policy
    }
}

/// For tests and embedders: `client` as the shared client, with the default policy for literal IP
/// URLs and for per-trigger TLS clients. Host names resolved by `client` itself are not checked.
impl From<reqwest::Client> for HttpClients {
    fn from(client: reqwest::Client) -> Self {
        Self {
            shared: client,
            policy: Arc::new(EgressPolicy::default()),
            slack_api_url: Arc::from(crate::triggers::slack::DEFAULT_API_URL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("the test CIDR parses")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("the test IP address parses")
    }

    #[test]
    fn cidrs_parse_and_contain() {
        assert!(cidr("169.254.0.0/16").contains(ip("169.254.169.254")));
        assert!(!cidr("169.254.0.0/16").contains(ip("169.255.0.1")));
        assert!(cidr("fe80::/10").contains(ip("fe80::1")));
        assert!(cidr("fd00:ec2::254").contains(ip("fd00:ec2::254")));
        assert!(!cidr("fd00:ec2::254").contains(ip("fd00:ec2::255")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        // An IPv4-mapped IPv6 address is its IPv4 address.
        assert!(cidr("169.254.0.0/16").contains(ip("::ffff:169.254.169.254")));
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_cidrs_are_refused_with_a_reason() {
        for (text, reason) in [
            ("10.0.0.0/33", "prefix length"),
            ("10.0.0.1/8", "bits set after the prefix"),
            ("example.com/8", "not an IPv4 or IPv6"),
            ("10.0.0.0/x", "prefix length"),
        ] {
            let err = text
                .parse::<Cidr>()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(text) && err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn by_default_metadata_and_link_local_are_denied_loopback_and_private_allowed() {
        let p = EgressPolicy::default();
        for denied in [
            "169.254.169.254",
            "169.254.1.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            let err = p
                .check("h", ip(denied))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("--egress-allow"), "{denied}: {err}");
        }
        for allowed in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "8.8.8.8",
        ] {
            assert_eq!(p.check("h", ip(allowed)), Ok(()), "{allowed}");
        }
    }

    #[test]
    fn the_most_specific_rule_decides_and_a_tie_denies() {
        let p = EgressPolicy::with_rules(
            &[cidr("10.0.0.0/8")],
            &[cidr("10.1.2.0/24"), cidr("169.254.10.0/24")],
        );
        assert!(p.check("h", ip("10.9.9.9")).is_err());
        assert_eq!(p.check("h", ip("10.1.2.3")), Ok(()));
        assert_eq!(p.check("h", ip("169.254.10.7")), Ok(()));
        assert!(p.check("h", ip("169.254.169.254")).is_err());
        let tie = EgressPolicy::with_rules(&[cidr("10.0.0.0/8")], &[cidr("10.0.0.0/8")]);
        assert!(tie.check("h", ip("10.0.0.1")).is_err());
        let err = p
            .check("internal", ip("10.9.9.9"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(err, "refused to connect to 10.9.9.9 (host `internal`): it is in 10.0.0.0/8, which the sensor's egress rules deny");
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_only_to_denied_addresses() {
        use reqwest::dns::Resolve as _;
        let deny_loopback = EgressPolicy::with_rules(&[cidr("127.0.0.0/8"), cidr("::1/128")], &[]);
        let resolver = GuardedResolver::new(Arc::new(deny_loopback));
        let name = reqwest::dns::Name::from_str("localhost").expect("localhost is a valid DNS name");
        let err = resolver
            .resolve(name)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("refused to connect to") && err.contains("localhost"),
            "{err}"
        );
        let open = GuardedResolver::new(Arc::new(EgressPolicy::default()));
        let name = reqwest::dns::Name::from_str("localhost").expect("localhost is a valid DNS name");
        let addrs: Vec<SocketAddr> = open.resolve(name).await.map(|a| a.collect()).unwrap_or_default();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
