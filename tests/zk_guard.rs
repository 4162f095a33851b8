//! ZooKeeper from outside the chain: an outsider's ZooKeeper client without
//! the chain's digest cannot add, remove or change members, and junk under
//! the chain node fences no one; and the client's ZooKeeper error paths
//! (each message, exit code and time bound). Real processes, real ZooKeeper.
//!
//! The outsider uses the `zookeeper` crate directly, as any program on the
//! network could (src/coord/ is the only importer in the product).

mod common;

use std::net::TcpListener;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use chaintable::check::secrets::ClusterSecrets;
use chaintable::secure::secret::{Secret, ZOOKEEPER_DIGEST_USER};
use common::chain::{SERVER_START, converged};
use common::ensemble::Writer;
use common::{ServerProcess, ZooKeeperProcess, run_client, start_server, start_zookeeper};
use zookeeper::{Acl, CreateMode, Permission, WatchedEvent, ZkError, ZooKeeper};

/// The members' ZooKeeper identity, `user:password`, as the server derives
/// it from the peer secret.
fn identity(secrets: &ClusterSecrets) -> String {
    let secret = Secret::load(&secrets.peer_file()).expect("peer secret");
    format!("{ZOOKEEPER_DIGEST_USER}:{}", secret.zookeeper_password())
}

/// `user:base64(sha1(user:password))`, computed by the `openssl` command,
/// not by our code.
fn digest_of(identity: &str) -> String {
    let output = std::process::Command::new("sh")
        .args(["-c", "printf %s \"$1\" | openssl sha1 -binary | base64", "sh", identity])
        .output()
        .expect("running openssl");
    let user = identity.split(':').next().expect("user");
    format!("{user}:{}", String::from_utf8_lossy(&output.stdout).trim())
}

fn outsider(zookeeper: &ZooKeeperProcess) -> ZooKeeper {
    ZooKeeper::connect(&zookeeper.address(), Duration::from_secs(5), |_: WatchedEvent| {})
        .expect("outsider session")
}

/// Starts a server and waits until it says (in `stats`) it is a ready member.
fn start_member(zookeeper: &ZooKeeperProcess, extra: &[String]) -> ServerProcess {
    let mut args = vec![zookeeper.address(), "--zk-timeout-ms".into(), "2000".into()];
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = start_server(64, &args);
    assert!(server.wait_until_ready(SERVER_START), "not ready:\n{}", server.log());
    server
}

/// Each server's fencings so far, as it counts them in `stats`.
fn fenced(servers: &[&ServerProcess]) -> Vec<u64> {
    servers.iter().map(|server| server.stats().expect("stats").fencings).collect()
}

#[test]
fn without_the_digest_an_outsider_cannot_change_the_chain() {
    let zookeeper = start_zookeeper();
    let outsider = outsider(&zookeeper);
    // An older run left the chain node open to all.
    outsider
        .create("/chain", Vec::new(), Acl::open_unsafe().clone(), CreateMode::Persistent)
        .expect("open /chain");
    let secrets = ClusterSecrets::create().expect("secrets");
    let (identity, identity_digest) = (identity(&secrets), digest_of(&identity(&secrets)));
    // The peer secret only: the writer below is a client without a secret.
    let peer_secret = ["--peer-secret-file".to_owned(), secrets.peer_file().display().to_string()];
    let head = start_member(&zookeeper, &peer_secret);
    let tail = start_member(&zookeeper, &peer_secret);
    assert!(head.log().contains("/chain was open to all: set its ACL"), "{}", head.log());
    // ZooKeeper shows a digest id only to a session that may administer the
    // node: "x" to the outsider, the digest to a member's identity.
    let acl = |id: &str| {
        vec![Acl::new(Permission::ALL, "digest", id), Acl::new(Permission::READ, "world", "anyone")]
    };
    let member_view = self::outsider(&zookeeper);
    member_view.add_auth("digest", identity.as_bytes().to_vec()).expect("add_auth");
    let members = outsider.get_children("/chain", false).expect("anyone reads the chain");
    assert_eq!(members.len(), 2);
    for path in ["/chain".to_owned(), format!("/chain/{}", members[0])] {
        assert_eq!(outsider.get_acl(&path).expect("get_acl").0, acl("chaintable:x"), "{path}");
        assert_eq!(member_view.get_acl(&path).expect("get_acl").0, acl(&identity_digest), "{path}");
    }
    let writer = Writer::start(&zookeeper.address(), "/chain", "acl-");
    thread::sleep(Duration::from_millis(500));

    let fake = b"127.0.0.1:1 ready 0000000000000000 server:1".to_vec();
    let attacks = [
        (
            "fake member",
            outsider
                .create(
                    "/chain/node",
                    fake.clone(),
                    Acl::open_unsafe().clone(),
                    CreateMode::EphemeralSequential,
                )
                .map(drop),
        ),
        ("member deleted", outsider.delete(&format!("/chain/{}", members[0]), None)),
        ("member replaced", outsider.set_data(&format!("/chain/{}", members[1]), fake, None).map(drop)),
        ("commit record", outsider.set_data("/chain", b"junk".to_vec(), None).map(drop)),
        ("ACL", outsider.set_acl("/chain", Acl::open_unsafe().clone(), None).map(drop)),
    ];
    for (attack, result) in attacks {
        assert_eq!(result, Err(ZkError::NoAuth), "{attack}");
    }
    assert_eq!(outsider.get_children("/chain", false).expect("children"), members, "nothing changed");
    thread::sleep(Duration::from_millis(500));
    let report = writer.stop();
    assert!(report.acked.len() > 10 && report.failures == 0, "writes went on: {} acked", report.acked.len());
    let table = converged(&[&head, &tail]);
    assert!(
        report.acked.iter().all(|key| table.iter().any(|(stored, _)| stored == key)),
        "acknowledged writes kept"
    );
    assert_eq!(fenced(&[&head, &tail]), [0, 0], "no server was fenced");
}

#[test]
fn without_an_identity_the_chain_stays_open() {
    let zookeeper = start_zookeeper();
    let _head = start_member(&zookeeper, &[]);
    let outsider = outsider(&zookeeper);
    assert_eq!(outsider.get_acl("/chain").expect("get_acl").0, Acl::open_unsafe().clone());
}

#[test]
fn three_thousand_junk_children_fence_no_one() {
    let zookeeper = start_zookeeper();
    let head = start_member(&zookeeper, &[]);
    let tail = start_member(&zookeeper, &[]);
    let during = Writer::start(&zookeeper.address(), "/chain", "during-");
    let outsider = outsider(&zookeeper);
    let started = Instant::now();
    for index in 0..3000 {
        let data = b"127.0.0.1:1 ready".to_vec();
        outsider
            .create(&format!("/chain/junk{index}"), data, Acl::open_unsafe().clone(), CreateMode::Persistent)
            .expect("junk child");
    }
    // A member-like name with data that is not a member's.
    outsider
        .create("/chain/node", b"\xff".to_vec(), Acl::open_unsafe().clone(), CreateMode::PersistentSequential)
        .expect("junk member");
    let filled = started.elapsed();
    let during = during.stop();
    // With the junk in place, membership re-reads the chain on its timer.
    let after = Writer::start(&zookeeper.address(), "/chain", "after-");
    thread::sleep(Duration::from_secs(4));
    let after = after.stop();
    let seconds = started.elapsed().as_secs() + 1;
    eprintln!(
        "junk: 3,001 children created in {} ms; meanwhile {} writes acked, longest gap {} ms; \
         afterwards {} writes acked in 4 s, longest gap {} ms",
        filled.as_millis(),
        during.acked.len(),
        during.longest_gap.as_millis(),
        after.acked.len(),
        after.longest_gap.as_millis()
    );
    assert_eq!(fenced(&[&head, &tail]), [0, 0], "no server was fenced");
    assert_eq!((during.failures, after.failures), (0, 0));
    assert!(after.longest_gap < Duration::from_secs(1), "longest write gap {:?}", after.longest_gap);
    let table = converged(&[&head, &tail]);
    for key in during.acked.iter().chain(&after.acked) {
        assert!(table.iter().any(|(stored, _)| stored == key), "acknowledged {key} lost");
    }
    for server in [&head, &tail] {
        let log = server.log();
        let reports = log.lines().filter(|line| line.contains("ignoring")).count() as u64;
        assert!(log.contains("ignoring 3001 children of /chain"), "{log}");
        assert!(reports <= seconds, "{reports} reports in {seconds} s");
    }
}

/// Runs `table-client <target> get x` and returns its output and duration.
fn client_get(target: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = run_client(target, &["get", "x"], None);
    (output, started.elapsed())
}

#[track_caller]
fn assert_fails(target: &[&str], message: &str, within: Duration) {
    let (output, took) = client_get(target);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{target:?}: {stderr}");
    assert_eq!(stderr.trim_end(), message, "{target:?}");
    assert!(took < within, "{target:?} took {took:?}");
}

/// A listener that accepts and closes (as a ZooKeeper without its quorum
/// does) or never answers may be a ZooKeeper that comes back: the client
/// waits its timeout, saying what it saw, and never calls it "not a
/// ZooKeeper" for good.
#[test]
fn a_zookeeper_that_accepts_but_does_not_answer_is_waited_for() {
    for silent in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(4);
        let acceptor = thread::spawn(move || {
            let mut held = Vec::new();
            while Instant::now() < until {
                match listener.accept() {
                    Ok((stream, _)) if silent => held.push(stream),
                    Ok((stream, _)) => drop(stream),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let started = Instant::now();
        let output = run_client(&["--timeout-ms", "2500", &address], &["get", "x"], None);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        let expected =
            format!("{address} accepted the connection but did not answer the ZooKeeper handshake");
        assert!(stderr.contains(&expected) && !stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("is not a ZooKeeper ("), "{stderr}");
        assert!(took >= Duration::from_millis(2000), "waited only {took:?}: {stderr}");
        acceptor.join().unwrap();
    }
}

#[test]
fn client_errors_that_cannot_heal_fail_at_once_with_a_precise_message() {
    let instant = Duration::from_millis(500);
    // Not written host:port: a usage error, before anything is contacted.
    let try_help = "\nTry 'table-client --help' for more information.";
    assert_fails(
        &["localhost"],
        &format!(
            "table-client: 'localhost' is neither a command nor a ZooKeeper address (host:port,...){try_help}"
        ),
        instant,
    );
    assert_fails(
        &["127.0.0.1:2181,:2181"],
        &format!("table-client: bad ZooKeeper address: ':2181' is not a host:port address{try_help}"),
        instant,
    );

    // A table-server's port where ZooKeeper's belongs: no panic text, 2 s.
    let server = start_server(16, &[]);
    let (output, took) = client_get(&[&server.address]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!("table-client: no chain at {0}/chain: {0} is not a ZooKeeper (", server.address);
    assert!(stderr.starts_with(&expected) && stderr.lines().count() == 1, "{stderr}");
    assert!(!stderr.contains("panicked") && took < Duration::from_secs(2), "{stderr} after {took:?}");

    // A chain path that does not exist: at once, naming the path.
    let zookeeper = start_zookeeper();
    let hosts = zookeeper.address();
    assert_fails(
        &[&hosts, "--chain", "/no/such/chain"],
        &format!(
            "table-client: no chain at {hosts}/no/such/chain: the chain path /no/such/chain does not exist in ZooKeeper"
        ),
        Duration::from_secs(2),
    );
}
