//! Container addresses (IPAM): which container holds which IPv4 address of each
//! network, kept on disk so that a container keeps its address across restarts and
//! reboots, and no address is ever handed to two containers.
//!
//! Layout: one file per network in the state directory (PID 1 uses
//! [`STATE_DIR`]), `NAME.json`, a JSON object `{"container": "10.88.0.2", …}`. Every
//! change is written to a temporary file in the same directory, synced, renamed over
//! the old file and the directory synced, so a crash leaves the old or the new table,
//! never half of one. A file that cannot be read back is an error naming it: keel
//! never guesses, because guessing could hand out an address that is in use.
//!
//! The choice of an address ([`choose`]) is pure; [`Ipam`] adds the files. One
//! process (PID 1) owns the directory: an [`Ipam`] keeps the tables in memory and does
//! not see changes another process makes to the files.

use crate::config::{check_network_name, Ipv4Net, Network};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where PID 1 keeps the allocations.
pub const STATE_DIR: &str = "/var/lib/keel/ipam";

/// Why an address could not be allocated, released or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "rename", …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An allocation file exists but does not hold a valid table.
    #[error("{path}: corrupt allocation table ({reason}); fix or remove it (removing it forgets every address of the network)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Every host address of the network is taken.
    #[error("network {network} ({subnet}) has no free address left for container {container}")]
    Exhausted {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
        /// The container that asked.
        container: String,
    },
    /// A network or container name that cannot be stored.
    #[error("{0}")]
    InvalidName(String),
}

/// One network's allocations: container → address.
pub type Table = BTreeMap<String, Ipv4Addr>;

/// Whether `addr` may be given to a container of `network`: inside the subnet and
/// neither its network address, its broadcast address nor the gateway.
pub fn usable(network: &Network, addr: Ipv4Addr) -> bool {
    let subnet = network.subnet;
    subnet.contains(addr) && addr != subnet.network() && addr != subnet.broadcast() && addr != network.gateway
}

/// The address `container` should have in `network`, given the current `table`: the
/// one it already holds if still usable (it is not when the subnet or gateway changed
/// since), else the lowest usable address nobody else holds. `None`: the subnet is full.
pub fn choose(network: &Network, table: &Table, container: &str) -> Option<Ipv4Addr> {
    if let Some(&held) = table.get(container) {
        let shared = table.iter().any(|(other, &addr)| other != container && addr == held);
        if usable(network, held) && !shared {
            return Some(held);
        }
    }
    let taken: std::collections::BTreeSet<Ipv4Addr> =
        table.iter().filter(|(other, _)| other.as_str() != container).map(|(_, &addr)| addr).collect();
    (1..=network.subnet.host_count())
        .filter_map(|n| network.subnet.nth_host(n))
        .find(|addr| usable(network, *addr) && !taken.contains(addr))
}

/// The allocations of every network, backed by a state directory.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    tables: BTreeMap<String, Table>,
}

impl Ipam {
    /// Open (creating it if needed) the state directory and load every `NAME.json`.
    /// Any unreadable or corrupt file is an error: starting without it could hand out
    /// addresses that are in use.
    pub fn open(dir: impl AsRef<Path>) -> Result<Ipam, IpamError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| IpamError::Io { op: "create directory", path: dir.clone(), source })?;
        let entries = fs::read_dir(&dir).map_err(|source| IpamError::Io { op: "read directory", path: dir.clone(), source })?;
        let mut tables = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| IpamError::Io { op: "read directory", path: dir.clone(), source })?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(".json")) else { continue };
            if name.starts_with('.') {
                continue; // a temporary file left by a crash before its rename
            }
            let path = entry.path();
            let text = fs::read_to_string(&path).map_err(|source| IpamError::Io { op: "read", path: path.clone(), source })?;
            let table = decode(&text).map_err(|reason| IpamError::Corrupt { path: path.clone(), reason })?;
            tables.insert(name.to_string(), table);
        }
        Ok(Ipam { dir, tables })
    }

    /// The address of `container` in `network`: the one it had before (also across
    /// restarts) if still valid, else the lowest free host address. The table is on
    /// disk before this returns.
    pub fn allocate(&mut self, network: &Network, container: &str) -> Result<Ipv4Addr, IpamError> {
        check_network_name(&network.name).map_err(|e| IpamError::InvalidName(format!("network: {e}")))?;
        if container.is_empty() {
            return Err(IpamError::InvalidName("container name is empty".into()));
        }
        let table = self.tables.get(&network.name).cloned().unwrap_or_default();
        let addr = choose(network, &table, container).ok_or_else(|| IpamError::Exhausted {
            network: network.name.clone(),
            subnet: network.subnet,
            container: container.to_string(),
        })?;
        if table.get(container) != Some(&addr) {
            let mut updated = table;
            updated.insert(container.to_string(), addr);
            self.store(&network.name, updated)?;
        }
        Ok(addr)
    }

    /// Forget the address of `container` in `network` (nothing to do if it has none).
    pub fn release(&mut self, network: &str, container: &str) -> Result<(), IpamError> {
        let Some(table) = self.tables.get(network) else { return Ok(()) };
        if !table.contains_key(container) {
            return Ok(());
        }
        let mut updated = table.clone();
        updated.remove(container);
        self.store(network, updated)
    }

    /// The address `container` holds in `network`, if any.
    pub fn lookup(&self, network: &str, container: &str) -> Option<Ipv4Addr> {
        self.tables.get(network)?.get(container).copied()
    }

    /// Every (container, address) of `network`, by container name.
    pub fn allocations(&self, network: &str) -> Vec<(String, Ipv4Addr)> {
        self.tables.get(network).map(|t| t.iter().map(|(c, a)| (c.clone(), *a)).collect()).unwrap_or_default()
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `table` for `network`, then keep it in memory (only once it is on disk).
    fn store(&mut self, network: &str, table: Table) -> Result<(), IpamError> {
        let path = self.dir.join(format!("{network}.json"));
        write_atomically(&self.dir, &path, encode(&table).as_bytes())?;
        self.tables.insert(network.to_string(), table);
        Ok(())
    }
}

fn encode(table: &Table) -> String {
    let strings: BTreeMap<&str, String> = table.iter().map(|(c, a)| (c.as_str(), a.to_string())).collect();
    let mut text = serde_json::to_string_pretty(&strings).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// Read a table back: a JSON object of container → IPv4 address, no address twice.
fn decode(text: &str) -> Result<Table, String> {
    let strings: BTreeMap<String, String> =
        serde_json::from_str(text).map_err(|e| format!("expected a JSON object of container name to IPv4 address: {e}"))?;
    let mut table = Table::new();
    let mut holders: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for (container, text) in &strings {
        if container.is_empty() {
            return Err("empty container name".into());
        }
        let addr: Ipv4Addr = text.parse().map_err(|_| format!("container {container}: {text:?} is not an IPv4 address"))?;
        if let Some(other) = holders.insert(addr, container) {
            return Err(format!("{addr} is held by both {other} and {container}"));
        }
        table.insert(container.clone(), addr);
    }
    Ok(table)
}

/// Attach the operation and path to an I/O error.
fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IpamError + 'a {
    move |source| IpamError::Io { op, path: path.to_path_buf(), source }
}

/// Replace `path` by `data` so that a crash leaves either the old or the new content:
/// temporary file in the same directory, fsync, rename, fsync of the directory.
fn write_atomically(dir: &Path, path: &Path, data: &[u8]) -> Result<(), IpamError> {
    let file_name = path.file_name().and_then(|f| f.to_str()).unwrap_or("table.json");
    let temp = dir.join(format!(".{file_name}.tmp"));
    let result = (|| {
        let mut file = fs::File::create(&temp).map_err(io("create", &temp))?;
        file.write_all(data).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("sync", &temp))?;
        fs::rename(&temp, path).map_err(io("rename to its final name", &temp))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp); // best effort: the error above is the one to report
        return result;
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str) -> Network {
        let subnet = Ipv4Net::parse(subnet).unwrap();
        Network {
            name: name.into(),
            bridge: name.into(),
            subnet,
            subnet6: None,
            gateway: subnet.nth_host(1).unwrap(),
            isolated: false,
            metadata: false,
        }
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("keel-ipam-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn choose_skips_network_gateway_and_taken() {
        let keel0 = net("keel0", "10.88.0.0/16");
        let mut table = Table::new();
        assert_eq!(choose(&keel0, &table, "a"), Some(ip("10.88.0.2")));
        table.insert("a".into(), ip("10.88.0.2"));
        table.insert("b".into(), ip("10.88.0.4"));
        assert_eq!(choose(&keel0, &table, "a"), Some(ip("10.88.0.2")), "kept");
        assert_eq!(choose(&keel0, &table, "c"), Some(ip("10.88.0.3")), "lowest free");
        let mut custom = net("x", "10.1.0.0/29");
        custom.gateway = ip("10.1.0.6");
        assert_eq!(choose(&custom, &Table::new(), "a"), Some(ip("10.1.0.1")), "gateway elsewhere frees .1");
    }

    #[test]
    fn choose_moves_a_container_whose_address_left_the_subnet() {
        let mut table = Table::new();
        table.insert("a".into(), ip("10.77.0.9"));
        assert_eq!(choose(&net("keel0", "10.88.0.0/16"), &table, "a"), Some(ip("10.88.0.2")));
        // The gateway moved onto the address the container held.
        let mut moved = net("keel0", "10.88.0.0/16");
        moved.gateway = ip("10.88.0.2");
        table.insert("a".into(), ip("10.88.0.2"));
        assert_eq!(choose(&moved, &table, "a"), Some(ip("10.88.0.1")));
    }

    #[test]
    fn a_slash_30_holds_one_container_then_is_exhausted() {
        let dir = TempDir::new("full");
        let mut ipam = Ipam::open(&dir.0).unwrap();
        let small = net("small", "10.9.0.0/30");
        assert_eq!(ipam.allocate(&small, "a").unwrap(), ip("10.9.0.2"));
        let err = ipam.allocate(&small, "b").unwrap_err();
        assert!(matches!(&err, IpamError::Exhausted { network, container, .. } if network == "small" && container == "b"), "{err:?}");
        assert_eq!(err.to_string(), "network small (10.9.0.0/30) has no free address left for container b");
        assert_eq!(ipam.allocate(&small, "a").unwrap(), ip("10.9.0.2"), "the holder still gets it");
        ipam.release("small", "a").unwrap();
        assert_eq!(ipam.allocate(&small, "b").unwrap(), ip("10.9.0.2"), "free again after release");
    }

    #[test]
    fn allocations_are_stable_and_survive_reopen() {
        let dir = TempDir::new("reopen");
        let keel0 = net("keel0", "10.88.0.0/16");
        let other = net("other", "10.89.0.0/24");
        {
            let mut ipam = Ipam::open(&dir.0).unwrap();
            assert_eq!(ipam.allocate(&keel0, "web").unwrap(), ip("10.88.0.2"));
            assert_eq!(ipam.allocate(&keel0, "db").unwrap(), ip("10.88.0.3"));
            assert_eq!(ipam.allocate(&keel0, "cache").unwrap(), ip("10.88.0.4"));
            assert_eq!(ipam.allocate(&other, "web").unwrap(), ip("10.89.0.2"));
            assert_eq!(ipam.allocate(&keel0, "web").unwrap(), ip("10.88.0.2"));
            ipam.release("keel0", "db").unwrap();
            ipam.release("keel0", "nobody").unwrap();
            ipam.release("nonet", "web").unwrap();
            assert_eq!(ipam.lookup("keel0", "db"), None);
        }
        let mut ipam = Ipam::open(&dir.0).unwrap();
        assert_eq!(ipam.lookup("keel0", "web"), Some(ip("10.88.0.2")));
        assert_eq!(ipam.lookup("other", "web"), Some(ip("10.89.0.2")));
        assert_eq!(ipam.allocations("keel0"), vec![("cache".to_string(), ip("10.88.0.4")), ("web".to_string(), ip("10.88.0.2"))]);
        assert_eq!(ipam.allocations("missing"), vec![]);
        assert_eq!(ipam.allocate(&keel0, "cache").unwrap(), ip("10.88.0.4"), "same address after reopen");
        assert_eq!(ipam.allocate(&keel0, "new").unwrap(), ip("10.88.0.3"), "the released address is reused");
        let text = fs::read_to_string(dir.0.join("keel0.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json, serde_json::json!({"cache": "10.88.0.4", "new": "10.88.0.3", "web": "10.88.0.2"}));
        let leftovers: Vec<_> =
            fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().ends_with(".tmp")).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let cases = [
            ("not json", "expected a JSON object"),
            ("[\"10.88.0.2\"]", "expected a JSON object"),
            ("{\"web\": \"10.88.0.300\"}", "container web: \"10.88.0.300\" is not an IPv4 address"),
            ("{\"web\": 5}", "expected a JSON object"),
            ("{\"a\": \"10.88.0.2\", \"b\": \"10.88.0.2\"}", "10.88.0.2 is held by both a and b"),
            ("{\"\": \"10.88.0.2\"}", "empty container name"),
        ];
        for (text, expected) in cases {
            let dir = TempDir::new("corrupt");
            fs::create_dir_all(&dir.0).unwrap();
            let path = dir.0.join("keel0.json");
            fs::write(&path, text).unwrap();
            let err = Ipam::open(&dir.0).unwrap_err();
            match &err {
                IpamError::Corrupt { path: p, reason } => {
                    assert_eq!(p, &path);
                    assert!(reason.contains(expected), "{text}: {reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
            assert!(err.to_string().starts_with(&format!("{}: corrupt allocation table", path.display())), "{err}");
        }
    }

    #[test]
    fn temporary_and_foreign_files_are_ignored() {
        let dir = TempDir::new("ignore");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.0.join(".keel0.json.tmp"), "garbage").unwrap();
        fs::write(dir.0.join("README"), "garbage").unwrap();
        fs::write(dir.0.join("keel0.json"), "{\"web\": \"10.88.0.7\"}").unwrap();
        let ipam = Ipam::open(&dir.0).unwrap();
        assert_eq!(ipam.lookup("keel0", "web"), Some(ip("10.88.0.7")));
    }

    #[test]
    fn bad_names_are_refused_before_touching_the_disk() {
        let dir = TempDir::new("names");
        let mut ipam = Ipam::open(&dir.0).unwrap();
        let evil = net("../evil", "10.9.0.0/24");
        assert!(matches!(ipam.allocate(&evil, "a"), Err(IpamError::InvalidName(_))));
        assert!(matches!(ipam.allocate(&net("keel0", "10.9.0.0/24"), ""), Err(IpamError::InvalidName(_))));
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = TempDir::new("io");
        fs::create_dir_all(dir.0.parent().unwrap()).unwrap();
        fs::write(&dir.0, "a file, not a directory").unwrap();
        let err = Ipam::open(&dir.0).unwrap_err();
        assert!(matches!(&err, IpamError::Io { path, .. } if path == &dir.0), "{err:?}");
        let _ = fs::remove_file(&dir.0);
    }
}
