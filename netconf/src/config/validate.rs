//! From raw TOML to a [`NetworkConfig`], collecting every problem with its key and line.

use super::raw::{RawFile, RawFirewall, RawNetwork, RawUplink};
use super::*;
use std::net::Ipv4Addr;
use toml::Spanned;

/// Collects problems with their key and line.
struct Report<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    /// Record a problem about `key`, located at byte `offset` of the text when known.
    fn add(&mut self, key: &str, offset: Option<usize>, message: impl Into<String>) {
        let line = offset.map(|offset| line_at(self.text, offset));
        self.errors.push(ConfigError { file: self.file.into(), key: key.into(), line, message: message.into() });
    }

    /// Keep the value of a spanned field or record the error under `key`.
    fn check<T, U>(&mut self, key: &str, value: &Spanned<U>, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.add(key, Some(value.span().start), message)).ok()
    }
}

/// The 1-based line of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = text.len().min(offset);
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Parse and validate the network declaration `text`, read from `file` (used only in
/// error messages). See the module documentation for the defaults.
pub fn parse(text: &str, file: &str) -> Result<NetworkConfig, ConfigErrors> {
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let offset = e.span().map(|span| span.start);
            let key = offset.map(|o| key_at(text, o, e.message())).unwrap_or_default();
            let mut report = Report { file, text, errors: Vec::new() };
            report.add(&key, offset, e.message().trim());
            return Err(ConfigErrors(report.errors));
        }
    };
    let mut r = Report { file, text, errors: Vec::new() };
    let uplinks = uplinks(&raw.uplink, &mut r);
    let networks = networks(&raw.network, &uplinks, &mut r);
    let firewall = raw.firewall.as_ref().map(|f| firewall(f, &mut r)).unwrap_or_default();
    if !r.errors.is_empty() {
        return Err(ConfigErrors(r.errors));
    }
    let mut uplinks: Vec<Uplink> = uplinks.into_iter().map(|(_, u)| u).collect();
    if uplinks.is_empty() && raw.uplink.is_empty() {
        uplinks.push(default_uplink());
    }
    Ok(NetworkConfig { uplinks, networks, firewall })
}

/// The dotted key of a TOML error at `offset`: the enclosing table (with the index of
/// array tables), then the field toml names as unknown or the key on that line.
fn key_at(text: &str, offset: usize, message: &str) -> String {
    let target = line_at(text, offset);
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut line_key = None;
    for (index, raw) in text.lines().enumerate() {
        if index + 1 > target {
            break;
        }
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[') {
            let is_array = header.starts_with('[');
            let name = header.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string();
            table = if is_array {
                let count = counts.entry(name.clone()).or_insert(0);
                *count += 1;
                format!("{name}[{}]", *count - 1)
            } else {
                name
            };
            line_key = None;
        } else if index + 1 == target {
            line_key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string());
        }
    }
    let unknown = message.split("unknown field `").nth(1).and_then(|rest| rest.split('`').next()).map(str::to_string);
    let key = unknown.or(line_key).unwrap_or_default();
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

fn uplinks(raw: &[Spanned<RawUplink>], r: &mut Report) -> Vec<(usize, Uplink)> {
    let mut valid: Vec<(usize, Uplink)> = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let Some(uplink) = uplink(i, entry, r) else { continue };
        if let Some((first, _)) = valid.iter().find(|(_, u)| u.select == uplink.select) {
            let (field, offset, what) = match (&entry.get_ref().interface, &entry.get_ref().mac) {
                (Some(name), _) => ("interface", name.span().start, format!("interface {:?}", name.get_ref())),
                (_, Some(mac)) => ("mac", mac.span().start, format!("MAC {}", mac.get_ref())),
                _ => ("", entry.span().start, "the first ethernet interface".to_string()),
            };
            let key = if field.is_empty() { format!("uplink[{i}]") } else { format!("uplink[{i}].{field}") };
            r.add(&key, Some(offset), format!("{what} is already uplink[{first}]"));
            continue;
        }
        valid.push((i, uplink));
    }
    valid
}

fn uplink(i: usize, entry: &Spanned<RawUplink>, r: &mut Report) -> Option<Uplink> {
    let before = r.errors.len();
    let u = entry.get_ref();
    let key = |field: &str| format!("uplink[{i}].{field}");
    let select = match (&u.interface, &u.mac) {
        (Some(_), Some(mac)) => {
            r.add(&key("mac"), Some(mac.span().start), "interface and mac exclude each other: give one of them");
            None
        }
        (Some(name), None) => {
            r.check(&key("interface"), name, check_ifname(name.get_ref()).map(|()| UplinkSelect::Name(name.get_ref().clone())))
        }
        (None, Some(mac)) => r.check(&key("mac"), mac, parse_mac(mac.get_ref()).map(UplinkSelect::Mac)),
        (None, None) => Some(UplinkSelect::FirstEthernet),
    };
    let mtu = u.mtu.as_ref().and_then(|m| {
        let value = *m.get_ref();
        let result =
            u32::try_from(value).ok().filter(|v| (68..=65535).contains(v)).ok_or_else(|| format!("{value} must be from 68 to 65535"));
        r.check(&key("mtu"), m, result)
    });
    let mode = uplink_mode(i, entry, r);
    if r.errors.len() > before {
        return None;
    }
    Some(Uplink { select: select?, mode: mode?, mtu })
}

fn uplink_mode(i: usize, entry: &Spanned<RawUplink>, r: &mut Report) -> Option<UplinkMode> {
    let u = entry.get_ref();
    let key = |field: &str| format!("uplink[{i}].{field}");
    let static_fields: Vec<(&str, usize)> = [
        ("address", u.address.as_ref().map(|v| v.span().start)),
        ("gateway", u.gateway.as_ref().map(|v| v.span().start)),
        ("dns", u.dns.as_ref().map(|v| v.span().start)),
    ]
    .into_iter()
    .filter_map(|(field, offset)| offset.map(|o| (field, o)))
    .collect();
    let dhcp = u.dhcp.as_ref().map(|d| *d.get_ref());
    if dhcp == Some(true) {
        for (field, offset) in &static_fields {
            r.add(&key(field), Some(*offset), "dhcp = true and a static address exclude each other: remove this or set dhcp = false");
        }
        return static_fields.is_empty().then_some(UplinkMode::Dhcp);
    }
    if dhcp.is_none() && static_fields.is_empty() {
        return Some(UplinkMode::Dhcp);
    }
    let Some(address_text) = &u.address else {
        let offset = u.dhcp.as_ref().map_or(entry.span().start, |d| d.span().start);
        r.add(&key("address"), Some(offset), "required for a static uplink (without dhcp = true): a.b.c.d/prefix");
        return None;
    };
    let address = r.check(&key("address"), address_text, Ipv4Net::parse(address_text.get_ref()).and_then(static_address));
    let gateway = u.gateway.as_ref().and_then(|g| {
        let result = parse_v4(g.get_ref()).and_then(|gw| match address {
            Some(a) if a.addr == gw => Err(format!("{gw} is the uplink's own address")),
            _ => Ok(gw),
        });
        r.check(&key("gateway"), g, result).map(Some)
    });
    let mut dns = Vec::new();
    if let Some(list) = &u.dns {
        for (j, server) in list.get_ref().iter().enumerate() {
            let result = server.get_ref().parse::<IpAddr>().map_err(|_| format!("{:?} is not an IP address", server.get_ref()));
            dns.extend(r.check(&format!("uplink[{i}].dns[{j}]"), server, result));
        }
    }
    Some(UplinkMode::Static { address: address?, gateway: gateway.unwrap_or(None), dns })
}

/// A host address with its prefix: not the network or broadcast address of its subnet.
fn static_address(net: Ipv4Net) -> Result<Ipv4Net, String> {
    if net.prefix == 0 || net.addr.is_unspecified() {
        return Err(format!("{net} is not a host address"));
    }
    if net.prefix <= 30 && net.is_network_address() {
        return Err(format!("{net} is the network address of its subnet, not a host address"));
    }
    if net.prefix <= 30 && net.addr == net.broadcast() {
        return Err(format!("{net} is the broadcast address of its subnet, not a host address"));
    }
    Ok(net)
}

fn parse_v4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an IPv4 address"))
}

/// A network that passed its own checks, with where its fields were written.
struct Checked {
    index: usize,
    network: Network,
    name_at: usize,
    bridge_at: usize,
    subnet_at: usize,
    subnet6_at: Option<usize>,
}

fn networks(raw: &[Spanned<RawNetwork>], uplinks: &[(usize, Uplink)], r: &mut Report) -> Vec<Network> {
    let mut checked: Vec<Checked> = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let Some(this) = network(i, entry, r) else { continue };
        let n = &this.network;
        for other in &checked {
            let o = &other.network;
            let (a, b) = (format!("network[{}]", this.index), format!("network[{}]", other.index));
            if n.name == o.name {
                r.add(&format!("{a}.name"), Some(this.name_at), format!("network {:?} is declared twice ({b} and {a})", n.name));
            }
            if n.bridge == o.bridge {
                r.add(
                    &format!("{a}.bridge"),
                    Some(this.bridge_at),
                    format!("bridge {:?} of network {:?} is already the bridge of network {:?} ({b})", n.bridge, n.name, o.name),
                );
            }
            if n.subnet.overlaps(&o.subnet) {
                r.add(
                    &format!("{a}.subnet"),
                    Some(this.subnet_at),
                    format!("subnet {} of network {:?} overlaps subnet {} of network {:?} ({b})", n.subnet, n.name, o.subnet, o.name),
                );
            }
            if let (Some(s), Some(t), Some(at)) = (n.subnet6, o.subnet6, this.subnet6_at) {
                if s.overlaps(&t) {
                    r.add(
                        &format!("{a}.subnet6"),
                        Some(at),
                        format!("subnet6 {s} of network {:?} overlaps subnet6 {t} of network {:?} ({b})", n.name, o.name),
                    );
                }
            }
        }
        checked.push(this);
    }
    if raw.is_empty() {
        checked.push(Checked { index: 0, network: Network::default_keel0(), name_at: 0, bridge_at: 0, subnet_at: 0, subnet6_at: None });
    }
    for (i, uplink) in uplinks {
        for c in &checked {
            let n = &c.network;
            let (key, offset, what) = if raw.is_empty() {
                ("network".to_string(), None, format!("the default network {:?}", n.name))
            } else {
                (format!("network[{}]", c.index), Some(c.subnet_at), format!("network {:?}", n.name))
            };
            if let UplinkSelect::Name(ifname) = &uplink.select {
                if *ifname == n.bridge {
                    let offset = offset.map(|_| c.bridge_at);
                    r.add(
                        &format!("{key}.bridge"),
                        offset,
                        format!("bridge {:?} of {what} is also the interface of uplink[{i}]", n.bridge),
                    );
                }
            }
            if let UplinkMode::Static { address, .. } = &uplink.mode {
                if address.overlaps(&n.subnet) {
                    let hint = if raw.is_empty() { ": declare a [[network]] with another subnet" } else { "" };
                    r.add(
                        &format!("{key}.subnet"),
                        offset,
                        format!("subnet {} of {what} overlaps the address {address} of uplink[{i}]{hint}", n.subnet),
                    );
                }
            }
        }
    }
    checked.into_iter().map(|c| c.network).collect()
}

fn network(i: usize, entry: &Spanned<RawNetwork>, r: &mut Report) -> Option<Checked> {
    let before = r.errors.len();
    let n = entry.get_ref();
    let key = |field: &str| format!("network[{i}].{field}");
    let table_at = entry.span().start;
    let name = match &n.name {
        Some(name) => r.check(&key("name"), name, check_network_name(name.get_ref()).map(|()| name.get_ref().clone())),
        None => {
            r.add(&key("name"), Some(table_at), "required: the network's name");
            None
        }
    };
    let bridge = match &n.bridge {
        Some(bridge) => r.check(&key("bridge"), bridge, check_ifname(bridge.get_ref()).map(|()| bridge.get_ref().clone())),
        None => name.clone(),
    };
    let subnet = match &n.subnet {
        Some(subnet) => r.check(&key("subnet"), subnet, Ipv4Net::parse(subnet.get_ref()).and_then(container_subnet)),
        None => {
            r.add(&key("subnet"), Some(table_at), "required: the network's IPv4 prefix, e.g. \"10.89.0.0/16\"");
            None
        }
    };
    let subnet6 = n.subnet6.as_ref().and_then(|s| r.check(&key("subnet6"), s, Ipv6Net::parse(s.get_ref()).and_then(container_subnet6)));
    let gateway = match (&n.gateway, subnet) {
        (Some(g), subnet) => r.check(&key("gateway"), g, parse_v4(g.get_ref()).and_then(|gw| subnet.map_or(Ok(gw), |s| gateway_in(gw, s)))),
        (None, Some(subnet)) => subnet.nth_host(1),
        (None, None) => None,
    };
    if r.errors.len() > before {
        return None;
    }
    let name_at = n.name.as_ref().map_or(table_at, |s| s.span().start);
    Some(Checked {
        index: i,
        network: Network {
            name: name?,
            bridge: bridge?,
            subnet: subnet?,
            subnet6,
            gateway: gateway?,
            isolated: n.isolated,
            metadata: n.metadata,
        },
        name_at,
        bridge_at: n.bridge.as_ref().map_or(name_at, |s| s.span().start),
        subnet_at: n.subnet.as_ref().map_or(table_at, |s| s.span().start),
        subnet6_at: n.subnet6.as_ref().map(|s| s.span().start),
    })
}

/// A container network's IPv4 prefix: written as the prefix itself, with room for a
/// gateway and at least one container.
fn container_subnet(net: Ipv4Net) -> Result<Ipv4Net, String> {
    if !net.is_network_address() {
        return Err(format!("{net} has host bits set: the prefix is {}", net.trunc()));
    }
    if net.prefix > 30 {
        return Err(format!("{net} is too small: at most /30 (a gateway and one container)"));
    }
    Ok(net)
}

fn container_subnet6(net: Ipv6Net) -> Result<Ipv6Net, String> {
    if !net.is_network_address() {
        return Err(format!("{net} has host bits set: the prefix is {}/{}", net.network(), net.prefix));
    }
    if net.prefix > 126 {
        return Err(format!("{net} is too small: at most /126"));
    }
    Ok(net)
}

fn gateway_in(gateway: Ipv4Addr, subnet: Ipv4Net) -> Result<Ipv4Addr, String> {
    if !subnet.contains(gateway) {
        Err(format!("{gateway} is outside the subnet {subnet}"))
    } else if gateway == subnet.network() || gateway == subnet.broadcast() {
        Err(format!("{gateway} is the network or broadcast address of {subnet}, not a host address"))
    } else {
        Ok(gateway)
    }
}

fn firewall(entry: &Spanned<RawFirewall>, r: &mut Report) -> Firewall {
    let f = entry.get_ref();
    let input = match f.input.as_ref() {
        None => InputPolicy::default(),
        Some(input) => {
            let result = match input.get_ref().as_str() {
                "accept" => Ok(InputPolicy::Accept),
                "drop" => Ok(InputPolicy::Drop),
                other => Err(format!("{other:?}: expected \"accept\" or \"drop\"")),
            };
            r.check("firewall.input", input, result).unwrap_or_default()
        }
    };
    let mut allow: Vec<(Proto, u16)> = Vec::new();
    for (j, entry) in f.allow.iter().enumerate() {
        let key = format!("firewall.allow[{j}]");
        let Some(rule) = r.check(&key, entry, allow_rule(entry.get_ref())) else { continue };
        if allow.contains(&rule) {
            r.add(&key, Some(entry.span().start), format!("{} is listed twice", entry.get_ref()));
        } else {
            allow.push(rule);
        }
    }
    Firewall { input, allow }
}

/// `tcp/22`.
fn allow_rule(text: &str) -> Result<(Proto, u16), String> {
    let (proto, port) = text.split_once('/').ok_or_else(|| format!("{text:?}: expected \"tcp/PORT\" or \"udp/PORT\""))?;
    let proto = Proto::parse(proto).map_err(|e| format!("{text:?}: {e}"))?;
    let port = ports::port_number(port).map_err(|e| format!("{text:?}: {e}"))?;
    Ok((proto, port))
}
