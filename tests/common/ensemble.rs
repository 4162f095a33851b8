//! A 3-node ZooKeeper ensemble on loopback (three `QuorumPeerMain`
//! processes, killed by PID on drop), and a writer that measures the
//! longest gap between acknowledged writes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;

const CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";

/// One ensemble member: its config and its process while it runs.
pub struct Peer {
    pub client_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

pub struct Ensemble {
    pub peers: Vec<Peer>,
    directory: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()).expect("a free port").port()
}

impl Ensemble {
    /// Writes zoo.cfg and myid for three peers, starts them, and waits for
    /// a quorum.
    pub fn start() -> Ensemble {
        let directory = std::env::temp_dir().join(format!("chaintable-ensemble-{}", std::process::id()));
        let ports: Vec<(u16, u16, u16)> = (0..3).map(|_| (free_port(), free_port(), free_port())).collect();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(index, (_, quorum, election))| {
                format!("server.{}=127.0.0.1:{quorum}:{election}\n", index + 1)
            })
            .collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(index, &(client_port, _, _))| {
                let data = directory.join(format!("peer{}", index + 1));
                std::fs::create_dir_all(&data).expect("peer directory");
                std::fs::write(data.join("myid"), format!("{}\n", index + 1)).expect("myid");
                let config = data.join("zoo.cfg");
                std::fs::write(
                    &config,
                    format!(
                        "tickTime=500\ninitLimit=20\nsyncLimit=4\ndataDir={}\nclientPort={client_port}\n\
                         clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr,ruok\n\
                         maxClientCnxns=0\n{servers}",
                        data.display()
                    ),
                )
                .expect("zoo.cfg");
                Peer { client_port, config, child: None }
            })
            .collect();
        let mut ensemble = Ensemble { peers, directory };
        for index in 0..3 {
            ensemble.start_peer(index);
        }
        ensemble.wait_for_quorum(3);
        ensemble
    }

    /// `127.0.0.1:a,127.0.0.1:b,127.0.0.1:c` in peer order.
    pub fn hosts(&self) -> String {
        self.peers.iter().map(|peer| format!("127.0.0.1:{}", peer.client_port)).collect::<Vec<_>>().join(",")
    }

    pub fn start_peer(&mut self, index: usize) {
        let peer = &mut self.peers[index];
        let child = Command::new("java")
            .args(["-cp", CLASSPATH, "-Xmx128m", "org.apache.zookeeper.server.quorum.QuorumPeerMain"])
            .arg(&peer.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting QuorumPeerMain");
        peer.child = Some(child);
    }

    pub fn kill_peer(&mut self, index: usize) {
        if let Some(mut child) = self.peers[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `leader`, `follower`, or `None` when the peer does not serve.
    pub fn mode(&self, index: usize) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.peers[index].client_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        stream.write_all(b"srvr").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.lines().find_map(|line| line.strip_prefix("Mode: ").map(str::to_owned))
    }

    pub fn leader(&self) -> usize {
        (0..3).find(|&index| self.mode(index).as_deref() == Some("leader")).expect("a leader")
    }

    /// Waits until `serving` peers serve (leader or follower).
    pub fn wait_for_quorum(&self, serving: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while (0..3).filter(|&index| self.mode(index).is_some()).count() < serving {
            assert!(Instant::now() < deadline, "the ensemble did not form");
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for index in 0..self.peers.len() {
            self.kill_peer(index);
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// A client writing distinct keys to a chain as fast as acknowledgements
/// come, until stopped; bounded by `MAX_WRITES`.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<WriterReport>,
}

pub struct WriterReport {
    /// Keys acknowledged, in order.
    pub acked: Vec<String>,
    /// Longest time between two acknowledgements (or from the start).
    pub longest_gap: Duration,
    /// Failed calls (each took up to the client timeout).
    pub failures: usize,
}

const MAX_WRITES: usize = 200_000;

impl Writer {
    pub fn start(zk_hosts: &str, chain_path: &str, prefix: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let (zk_hosts, chain_path, prefix) = (zk_hosts.to_owned(), chain_path.to_owned(), prefix.to_owned());
        let thread = thread::spawn(move || {
            let mut client =
                Client::chain(&zk_hosts, &chain_path, ClientOptions::default()).expect("chain client");
            let mut report = WriterReport { acked: Vec::new(), longest_gap: Duration::ZERO, failures: 0 };
            let mut last = Instant::now();
            for index in 0..MAX_WRITES {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let key = format!("{prefix}{index}");
                match client.put(&key, key.as_bytes().to_vec()) {
                    Ok(()) => {
                        report.longest_gap = report.longest_gap.max(last.elapsed());
                        last = Instant::now();
                        report.acked.push(key);
                    }
                    Err(_) => report.failures += 1,
                }
                // Some room for the servers on a shared machine.
                thread::sleep(Duration::from_millis(2));
            }
            // A gap still open when the writer stops counts too.
            report.longest_gap = report.longest_gap.max(last.elapsed());
            report
        });
        Writer { stop, thread }
    }

    pub fn stop(self) -> WriterReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("writer thread")
    }
}
