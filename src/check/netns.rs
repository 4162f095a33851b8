//! A private network for the `partition` nemesis: every server in its own
//! network namespace, linked by a veth pair to a bridge in the root
//! namespace, so one server can be cut off from ZooKeeper (and from the
//! other servers) while clients still reach it — the classic split-brain
//! case, which loopback cannot produce.
//!
//! Layout of network `N` (one per `table-check` run, claimed by creating the
//! bridge `ctbrN`): the bridge holds `10.213.N.1` (the source address of
//! every client in the root namespace) and `10.213.N.254` (ZooKeeper's);
//! server host `H` lives in namespace `ctN-hH` at `10.213.N.H`. A cut is a
//! blackhole route in the server's namespace: its packets to the cut-off
//! addresses vanish, as on a real network, while packets to the clients'
//! address still flow. Everything is removed again when dropped; a bridge
//! left by a run that was killed is reclaimed once its owner is gone.
//!
//! Needs root and iproute2 (`ip netns`); [`TestNetwork::create`] says so
//! clearly where they are missing.

use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// The /16 the networks are carved from (RFC 1918, unlikely to be in use on
/// a test machine; each run takes one /24 of it).
const PREFIX: [u8; 2] = [10, 213];

/// Host numbers servers may use (1 is the clients', 254 ZooKeeper's).
const SERVER_HOSTS: std::ops::RangeInclusive<u8> = 2..=253;

const CLIENT_HOST: u8 = 1;
const ZOOKEEPER_HOST: u8 = 254;

/// Runs `ip <args>`; the error carries what `ip` printed.
fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|error| {
        io::Error::new(error.kind(), format!("cannot run `ip` (Debian package iproute2): {error}"))
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn bridge_name(network: u8) -> String {
    format!("ctbr{network}")
}

fn namespace_name(network: u8, host: u8) -> String {
    format!("ct{network}-h{host}")
}

/// The process that owns a bridge, from the alias it was given.
fn bridge_owner(network: u8) -> Option<u32> {
    let alias = std::fs::read_to_string(format!("/sys/class/net/{}/ifalias", bridge_name(network))).ok()?;
    alias.trim().strip_prefix("table-check pid ")?.parse().ok()
}

/// One run's bridge and the host numbers in use on it.
pub struct TestNetwork {
    network: u8,
    hosts_in_use: Arc<Mutex<BTreeSet<u8>>>,
    /// Where the search for a free host number starts: numbers are handed
    /// out round-robin, so a number (and its address) is reused only long
    /// after its last server went, when no neighbour cache remembers the
    /// old link's hardware address any more.
    next_host: Mutex<u8>,
}

impl TestNetwork {
    /// Claims a free network number and sets up its bridge and addresses.
    pub fn create() -> io::Result<TestNetwork> {
        ip(&["netns", "list"]).map_err(|error| {
            io::Error::other(format!("the partition nemesis needs network namespaces (ip netns): {error}"))
        })?;
        for network in 0..=u8::MAX {
            let bridge = bridge_name(network);
            if Path::new("/sys/class/net").join(&bridge).exists() {
                match bridge_owner(network) {
                    Some(pid) if !Path::new(&format!("/proc/{pid}")).exists() => remove_network(network),
                    _ => continue,
                }
            }
            if let Err(error) = ip(&["link", "add", &bridge, "type", "bridge"]) {
                if error.to_string().contains("File exists") {
                    continue; // another run claimed it just now
                }
                return Err(io::Error::other(format!(
                    "the partition nemesis needs root and network namespaces: {error}"
                )));
            }
            let network = TestNetwork {
                network,
                hosts_in_use: Arc::default(),
                next_host: Mutex::new(*SERVER_HOSTS.start()),
            };
            network.configure_bridge()?;
            return Ok(network);
        }
        Err(io::Error::other("every test network 10.213.0-255.0/24 is in use"))
    }

    fn configure_bridge(&self) -> io::Result<()> {
        let bridge = bridge_name(self.network);
        let alias = format!("table-check pid {}", std::process::id());
        ip(&["link", "set", "dev", &bridge, "alias", &alias])?;
        // A bridge without an address of its own takes the lowest of its
        // ports' and changes it when that port goes (a killed server's veth):
        // every namespace's ARP entry for ZooKeeper's address then points at
        // a gone address, and all servers lost ZooKeeper for 30-45 s after
        // such a kill until the entries expired. A fixed, locally
        // administered address never changes.
        let hardware_address = format!("02:c7:7a:b1:e0:{:02x}", self.network);
        ip(&["link", "set", "dev", &bridge, "address", &hardware_address])?;
        ip(&["addr", "add", &format!("{}/24", self.address(CLIENT_HOST)), "dev", &bridge])?;
        ip(&["addr", "add", &format!("{}/24", self.address(ZOOKEEPER_HOST)), "dev", &bridge])?;
        ip(&["link", "set", "dev", &bridge, "up"])
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.network, host)
    }

    /// Where ZooKeeper listens.
    pub fn zookeeper_address(&self) -> Ipv4Addr {
        self.address(ZOOKEEPER_HOST)
    }

    /// A new namespace for one server, linked to the bridge.
    pub fn add_host(&self) -> io::Result<NetHost> {
        let host = {
            let mut in_use = self.hosts_in_use.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut next = self.next_host.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let (first, last) = (*SERVER_HOSTS.start(), *SERVER_HOSTS.end());
            let host = (*next..=last)
                .chain(first..*next)
                .find(|host| !in_use.contains(host))
                .ok_or_else(|| io::Error::other("no free host address on the test network"))?;
            in_use.insert(host);
            *next = if host == last { first } else { host + 1 };
            host
        };
        let net_host = NetHost {
            network: self.network,
            host,
            address: self.address(host),
            zookeeper: self.zookeeper_address(),
            hosts_in_use: Arc::clone(&self.hosts_in_use),
        };
        net_host.configure(&bridge_name(self.network))?;
        Ok(net_host)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        remove_network(self.network);
    }
}

/// Deletes a network's bridge and any namespaces left on it.
fn remove_network(network: u8) {
    for host in SERVER_HOSTS {
        let namespace = namespace_name(network, host);
        if Path::new("/run/netns").join(&namespace).exists() {
            let _ = ip(&["netns", "delete", &namespace]);
        }
    }
    let _ = ip(&["link", "delete", &bridge_name(network)]);
}

/// One server's namespace. Dropping it deletes the namespace (and with it
/// the veth pair); the server in it must be stopped first.
pub struct NetHost {
    network: u8,
    host: u8,
    /// The server's address.
    pub address: Ipv4Addr,
    zookeeper: Ipv4Addr,
    hosts_in_use: Arc<Mutex<BTreeSet<u8>>>,
}

impl NetHost {
    pub fn namespace(&self) -> String {
        namespace_name(self.network, self.host)
    }

    fn configure(&self, bridge: &str) -> io::Result<()> {
        let namespace = self.namespace();
        let outside = format!("ct{}h{}", self.network, self.host);
        let inside = format!("{outside}p");
        ip(&["netns", "add", &namespace])?;
        ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
        ip(&["link", "set", "dev", &inside, "netns", &namespace])?;
        ip(&["link", "set", "dev", &outside, "master", bridge])?;
        ip(&["link", "set", "dev", &outside, "up"])?;
        let in_namespace = |args: &[&str]| {
            let mut full = vec!["-n", namespace.as_str()];
            full.extend_from_slice(args);
            ip(&full)
        };
        in_namespace(&["link", "set", "dev", "lo", "up"])?;
        in_namespace(&["link", "set", "dev", &inside, "name", "eth0"])?;
        in_namespace(&["addr", "add", &format!("{}/24", self.address), "dev", "eth0"])?;
        in_namespace(&["link", "set", "dev", "eth0", "up"])
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace()]).arg(program);
        command
    }

    /// Cuts this host off from ZooKeeper, and from `peers` too; clients
    /// still reach it.
    pub fn cut_off(&self, peers: &[Ipv4Addr]) -> io::Result<()> {
        for target in std::iter::once(&self.zookeeper).chain(peers) {
            ip(&["-n", &self.namespace(), "route", "add", "blackhole", &format!("{target}/32")])?;
        }
        Ok(())
    }

    /// Undoes [`NetHost::cut_off`].
    pub fn heal(&self) -> io::Result<()> {
        ip(&["-n", &self.namespace(), "route", "flush", "type", "blackhole"])
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.namespace()]);
        self.hosts_in_use.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.host);
    }
}
