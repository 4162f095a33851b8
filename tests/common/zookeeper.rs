//! A real ZooKeeper server for tests: the Debian `zookeeper` package's jar,
//! started directly on a free loopback port with a fresh data directory and
//! tickTime 500 ms (so sessions of one second are allowed). Killed by PID
//! and its directory removed when dropped, also when the test panics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";
const TICK_MS: &str = "500";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ZooKeeperProcess {
    child: Option<Child>,
    pub port: u16,
    data_dir: PathBuf,
}

impl ZooKeeperProcess {
    pub fn start() -> ZooKeeperProcess {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data_dir = std::env::temp_dir().join(format!(
            "chaintable-test-zk-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut zookeeper = ZooKeeperProcess { child: None, port, data_dir };
        zookeeper.restart();
        zookeeper
    }

    /// `127.0.0.1:port`, for servers and clients.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills ZooKeeper (SIGKILL); its data directory stays for a restart.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts ZooKeeper again on the same port and data, and waits until it
    /// answers.
    pub fn restart(&mut self) {
        assert!(
            std::path::Path::new("/usr/share/java/zookeeper.jar").exists(),
            "ZooKeeper is not installed: apt-get install zookeeper (scripts/test.sh does it)"
        );
        let child = Command::new("java")
            .args(["-cp", CLASSPATH])
            .arg("-Dzookeeper.admin.enableServer=false")
            .arg("-Dzookeeper.4lw.commands.whitelist=ruok")
            .arg("-Xmx256m")
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(self.port.to_string())
            .arg(&self.data_dir)
            .arg(TICK_MS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting java for ZooKeeper");
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if self.answers() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("ZooKeeper did not start on port {}", self.port);
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = String::new();
        stream.write_all(b"ruok").is_ok() && stream.read_to_string(&mut answer).is_ok() && answer == "imok"
    }
}

impl Drop for ZooKeeperProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
