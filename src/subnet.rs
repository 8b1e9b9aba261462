//! An IP subnet in CIDR notation (`169.254.170.0/24`), for `[server]
//! trust_subnet`: container-endpoint requests from a peer inside it need no
//! token. Parsing is strict (host bits must be zero) because a typo here
//! widens who gets credentials without asking.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet(IpNet);

impl Subnet {
    /// Whether `ip` lies inside. An IPv4 peer on a dual-stack listener shows
    /// up as `::ffff:a.b.c.d`; it is compared as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }

    /// The checks `trust_subnet` adds to plain parsing: trusting loopback
    /// would hand credentials to every local user and process without the
    /// token, and a /0 would trust everyone.
    pub fn parse_trusted(text: &str) -> Result<Subnet, String> {
        let subnet: Subnet = text
            .parse()
            .map_err(|error| format!("trust_subnet {error}"))?;
        let loopback: IpNet = match subnet.0 {
            IpNet::V4(_) => "127.0.0.0/8",
            IpNet::V6(_) => "::1/128",
        }
        .parse()
        .map_err(|_| "the loopback network does not parse".to_owned())?;
        if subnet.0.prefix_len() == 0 {
            return Err(format!(
                "trust_subnet \"{text}\" would trust every address; name the container network, e.g. 169.254.170.0/24"
            ));
        }
        let overlaps =
            subnet.0.contains(&loopback.network()) || loopback.contains(&subnet.0.network());
        if overlaps {
            return Err(format!(
                "trust_subnet \"{text}\" includes loopback: every local process would get credentials without the token"
            ));
        }
        Ok(subnet)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(text: &str) -> Result<Subnet, String> {
        let shape =
            || format!("\"{text}\" is not a subnet ADDRESS/PREFIX such as 169.254.170.0/24");
        let (address, prefix) = text.split_once('/').ok_or_else(shape)?;
        let address: IpAddr = address.parse().map_err(|_| shape())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|prefix| *prefix <= max)
            .ok_or_else(|| format!("\"{text}\": the prefix length must be 0..={max}"))?;
        let net = IpNet::new(address, prefix).map_err(|_| shape())?;
        if net.network() != address {
            return Err(format!(
                "\"{text}\" has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Subnet(net))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Subnet {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn contains_addresses_inside_only() {
        let compose = subnet("169.254.170.0/24");
        assert!(compose.contains(ip("169.254.170.2")));
        assert!(compose.contains(ip("169.254.170.255")));
        assert!(!compose.contains(ip("169.254.171.5")));
        assert!(!compose.contains(ip("127.0.0.1")));
        assert!(
            compose.contains(ip("::ffff:169.254.170.3")),
            "an IPv4 peer on a dual-stack listener"
        );
        assert!(!compose.contains(ip("fd00:ec2::23")));

        let half = subnet("169.254.170.128/25");
        assert!(half.contains(ip("169.254.170.130")));
        assert!(!half.contains(ip("169.254.170.1")), "the bridge gateway");
        assert!(!half.contains(ip("169.254.170.2")));

        let v6 = subnet("fd00:ec2::/64");
        assert!(v6.contains(ip("fd00:ec2::23")));
        assert!(!v6.contains(ip("fd00:ec3::23")));
        assert!(!v6.contains(ip("169.254.170.2")));
        assert!(subnet("10.1.2.3/32").contains(ip("10.1.2.3")));
        assert!(!subnet("10.1.2.3/32").contains(ip("10.1.2.4")));
    }

    #[test]
    fn parsing_is_strict_and_says_what_is_wrong() {
        assert_eq!(subnet("169.254.170.0/24").to_string(), "169.254.170.0/24");
        for (text, expected) in [
            ("169.254.170.0", "not a subnet"),
            ("169.254.170/24", "not a subnet"),
            ("assumed/24", "not a subnet"),
            ("169.254.170.0/33", "0..=32"),
            ("169.254.170.0/-1", "0..=32"),
            ("fd00::/129", "0..=128"),
            ("169.254.170.2/24", "did you mean 169.254.170.0/24?"),
            ("fd00:ec2::23/64", "did you mean fd00:ec2::/64?"),
        ] {
            let error = text.parse::<Subnet>().expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn trusting_loopback_or_everyone_is_refused() {
        for (text, expected) in [
            ("127.0.0.0/8", "includes loopback"),
            ("127.0.0.1/32", "includes loopback"),
            ("96.0.0.0/3", "includes loopback"),
            ("::1/128", "includes loopback"),
            ("::/64", "includes loopback"),
            ("0.0.0.0/0", "every address"),
            ("::/0", "every address"),
        ] {
            let error = Subnet::parse_trusted(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
        assert!(Subnet::parse_trusted("169.254.170.0/24").is_ok());
        assert!(Subnet::parse_trusted("172.16.0.0/12").is_ok());
    }

    /// Through the whole config reader: positions, and the link to `expose`.
    #[test]
    fn config_reports_trust_subnet_problems_at_their_position() {
        let config = crate::config::parse(
            "[server]\nexpose = true\ntrust_subnet = \"169.254.170.0/24\"\n",
            "c.toml",
        )
        .expect("valid");
        assert_eq!(config.server.trust_subnet, Some(subnet("169.254.170.0/24")));
        assert_eq!(
            crate::config::parse("", "c.toml")
                .expect("valid")
                .server
                .trust_subnet,
            None,
            "off unless configured"
        );

        let cases = [
            (
                "[server]\ntrust_subnet = \"169.254.170.0/24\"\n",
                "c.toml:2:16: trust_subnet needs expose = true",
            ),
            (
                "[server]\nexpose = true\ntrust_subnet = \"169.254.170.9/24\"\n",
                "c.toml:3:16: trust_subnet \"169.254.170.9/24\" has host bits set",
            ),
            (
                "[server]\nexpose = true\ntrust_subnet = \"127.0.0.0/8\"\n",
                "c.toml:3:16: trust_subnet \"127.0.0.0/8\" includes loopback",
            ),
            (
                "[server]\nexpose = true\ntrust_subnet = [\"169.254.170.0/24\"]\n",
                "c.toml:3:16: trust_subnet: expected a string",
            ),
        ];
        for (source, expected) in cases {
            let error = crate::config::parse(source, "c.toml")
                .expect_err(source)
                .to_string();
            assert!(error.contains(expected), "{source}\n{error}");
        }
    }
}
