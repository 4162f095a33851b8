//! `table-check --durable`: every server of the cluster gets a data
//! directory of its own (`--data-dir`), and the faults that kill servers
//! restart them on it: one at a time ([`Cluster::restart_on_disk`], which
//! rejoins without a state transfer when it can), or every member at once
//! ([`Cluster::crash_all`], which only the disks survive). The history is
//! judged as any other: every acknowledged write must still be there.

use std::io;
use std::path::PathBuf;

use super::cluster::Cluster;
use crate::limits::CHECK_JOIN_TIMEOUT;

/// The servers' data directories, each made once under one root that is
/// removed when dropped (after every server stopped: see [`Cluster`]).
pub struct DataDirs {
    root: PathBuf,
    /// Directories made so far (each server's is `server-<n>`).
    made: usize,
}

impl DataDirs {
    pub fn create() -> io::Result<DataDirs> {
        let root = std::env::temp_dir().join(format!("chaintable-check-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        Ok(DataDirs { root, made: 0 })
    }

    /// A new server's directory (the server makes it, 0700).
    pub fn new_dir(&mut self) -> PathBuf {
        self.made += 1;
        self.root.join(format!("server-{}", self.made))
    }
}

impl Drop for DataDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Cluster {
    /// Kills server `victim` with SIGKILL and starts it again on its data
    /// directory; waits until it is a ready member again.
    pub fn restart_on_disk(&mut self, victim: usize) -> io::Result<String> {
        let mut killed = self.servers.remove(victim);
        killed.kill();
        let (chain, data_dir) = (killed.chain, killed.data_dir.take());
        drop(killed);
        let server = self.spawn(chain, Some(data_dir.ok_or_else(not_durable)?))?;
        let address = server.address.clone();
        self.servers.insert(victim, server);
        self.wait_ready(&[victim])?;
        Ok(address)
    }

    /// Kills every server at once (SIGKILL to all before reaping any), then
    /// starts each again on its data directory; waits until they are all
    /// ready members (the chain restarts from the member the commit record
    /// names, after a session timeout).
    pub fn crash_all(&mut self) -> io::Result<()> {
        for server in &self.servers {
            server.signal("KILL")?;
        }
        let killed = std::mem::take(&mut self.servers);
        let mut restarts = Vec::with_capacity(killed.len());
        for mut server in killed {
            server.kill();
            restarts.push((server.chain, server.data_dir.take().ok_or_else(not_durable)?));
        }
        for (chain, data_dir) in restarts {
            let server = self.spawn(chain, Some(data_dir))?;
            self.servers.push(server);
        }
        let all: Vec<usize> = (0..self.servers.len()).collect();
        self.wait_ready(&all)
    }

    fn wait_ready(&self, indices: &[usize]) -> io::Result<()> {
        for &index in indices {
            let server = &self.servers[index];
            if !server.wait_until_ready(CHECK_JOIN_TIMEOUT) {
                let log = server.log();
                return Err(io::Error::other(format!("{} did not rejoin; log:\n{log}", server.address)));
            }
        }
        Ok(())
    }
}

fn not_durable() -> io::Error {
    io::Error::other("a server without a data directory cannot restart on it (not --durable)")
}
