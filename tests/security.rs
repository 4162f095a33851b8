//! The trust boundary attacked from outside, against real servers on a real
//! ZooKeeper started the README's way (peer and client secrets): a stolen
//! node name, frames injected before and inside an authenticated link, a
//! snapshot that would wipe a replica, clients without the secret, a peer
//! with the wrong secret or a certificate from another CA, a plaintext
//! client on a TLS port. Each attack is refused, nothing changes, every
//! acknowledged write stays readable and the replicas stay identical.

mod common;

use std::io::{Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::check::secrets::ClusterSecrets;
use chaintable::client::Client;
use chaintable::client::connection::{ClientOptions, Connection};
use chaintable::client::error::ClientError;
use chaintable::coord::view_reader::read_view_once;
use chaintable::proto::{
    AuthStep, Downstream, ErrorCode, Opcode, ReplicaHello, Request, Response, SnapshotChunk, Write,
};
use chaintable::secure::secret::{Secret, ZOOKEEPER_DIGEST_USER};
use chaintable::secure::tls::ClientTls;
use chaintable::wire::{encode_frame, read_frame};
use common::chain::{converged_with, start_member};
use common::tls::TestCertificates;
use common::{ServerProcess, ZooKeeperProcess, start_zookeeper};
use protobuf::Message;
use zookeeper::{Acl, CreateMode, WatchedEvent, ZooKeeper};

const FRAME_MAX: usize = 1 << 20;
/// How long a refused peer is watched for not becoming ready.
const REFUSED_PEER_WATCH: Duration = Duration::from_secs(6);

/// A chain started with both secrets (and optionally more arguments), and
/// a client's options that prove the client secret.
struct SecureChain {
    servers: Vec<ServerProcess>,
    secrets: ClusterSecrets,
    zookeeper: ZooKeeperProcess,
    options: ClientOptions,
}

impl SecureChain {
    fn start(length: usize, extra: &[String]) -> SecureChain {
        let zookeeper = start_zookeeper();
        let secrets = ClusterSecrets::create().expect("secrets");
        let options = secrets.client_options(ClientOptions::default()).expect("client secret");
        let mut chain = SecureChain { servers: Vec::new(), secrets, zookeeper, options };
        for index in 0..length {
            let server = chain.start_member(index == 0, extra);
            chain.servers.push(server);
        }
        chain
    }

    fn start_member(&self, first: bool, extra: &[String]) -> ServerProcess {
        let mut args = self.secrets.server_args();
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start_member(&self.zookeeper, first, &args)
    }

    fn client(&self) -> Client {
        Client::chain(&self.zookeeper.address(), "/chain", self.options.clone()).expect("chain client")
    }

    /// Every replica's table, once they agree.
    fn converged(&self) -> Vec<(String, Vec<u8>)> {
        converged_with(&self.servers.iter().collect::<Vec<_>>(), &self.options)
    }
}

fn send(stream: &mut TcpStream, message: &impl Message) {
    let mut frame = Vec::new();
    encode_frame(message, FRAME_MAX, &mut frame).expect("encoding");
    stream.write_all(&frame).expect("sending a frame");
}

/// The next frame, or `None` once the server has closed the connection.
fn receive<M: Message>(stream: &mut TcpStream) -> Option<M> {
    let mut body = Vec::new();
    match read_frame(stream, FRAME_MAX, &mut body) {
        Ok(true) => Some(M::parse_from_bytes(&body).expect("a reply that decodes")),
        _ => None,
    }
}

fn hello(sender: &str, receiver: &str, nonce: Vec<u8>) -> Request {
    let mut request = Request::new();
    request.opcode = Opcode::OP_REPLICATE.into();
    request.replica_hello = Some(ReplicaHello {
        sender: sender.into(),
        receiver: receiver.into(),
        epoch: 1 << 40,
        nonce,
        ..Default::default()
    })
    .into();
    request
}

/// A write and a table-wiping snapshot end, as an attacker would send them.
fn forged_frames() -> [Downstream; 2] {
    let mut write = Downstream::new();
    write.writes.push(Write {
        sequence: 2,
        key: "injected".into(),
        value: Some(b"evil".to_vec()),
        ..Default::default()
    });
    let mut wipe = Downstream::new();
    wipe.snapshot = Some(SnapshotChunk { sequence: 1 << 62, last: true, ..Default::default() }).into();
    [write, wipe]
}

/// Sends [`forged_frames`], whether or not the server still listens.
fn send_forged(attacker: &mut TcpStream) {
    for frame in forged_frames() {
        let mut bytes = Vec::new();
        encode_frame(&frame, FRAME_MAX, &mut bytes).expect("encoding");
        let _ = attacker.write_all(&bytes);
    }
}

/// After an attack: acknowledged writes are all there, nothing injected is,
/// and the replicas are identical.
fn assert_untouched(chain: &SecureChain, acknowledged: &[&str]) {
    let mut client = chain.client();
    client.put("after", "attack").expect("writes go on after the attack");
    let table = chain.converged();
    let keys: Vec<&str> = table.iter().map(|(key, _)| key.as_str()).collect();
    for key in acknowledged.iter().chain(&["after"]) {
        assert!(keys.contains(key), "acknowledged {key} missing from {keys:?}");
    }
    assert!(!keys.contains(&"injected"), "an injected write was applied: {keys:?}");
}

#[test]
fn a_stolen_node_name_learns_nothing_and_changes_nothing() {
    let chain = SecureChain::start(3, &[]);
    let mut client = chain.client();
    for index in 0..20 {
        client.put(&format!("before{index}"), "1").expect("put");
    }
    let view = read_view_once(&chain.zookeeper.address(), "/chain", Duration::from_secs(5)).expect("view");
    let (head, middle) = (&view.members[0], &view.members[1]);

    // The head's name, from ZooKeeper (readable by anyone), without a nonce.
    let mut attacker = TcpStream::connect(&middle.address).expect("connect");
    send(&mut attacker, &hello(&head.name, &middle.name, Vec::new()));
    let reply: Response = receive(&mut attacker).expect("a refusal");
    let welcome = reply.replica_welcome.clone().unwrap_or_default();
    assert!(!welcome.accepted && welcome.last_applied == 0, "the welcome told something: {reply:?}");
    assert!(welcome.reason.contains("peer authentication"), "{}", welcome.reason);
    send_forged(&mut attacker);
    assert!(receive::<Response>(&mut attacker).is_none(), "the connection must be closed");

    // With a nonce it gets a challenge, but a wrong proof ends it there.
    let mut attacker = TcpStream::connect(&middle.address).expect("connect");
    send(&mut attacker, &hello(&head.name, &middle.name, vec![7; 32]));
    let challenge: Response = receive(&mut attacker).expect("a challenge");
    assert!(challenge.replica_welcome.is_none() && challenge.auth.nonce.len() == 32, "{challenge:?}");
    let mut proof = Request::new();
    proof.opcode = Opcode::OP_REPLICATE.into();
    proof.auth = Some(AuthStep { proof: vec![0; 32], ..Default::default() }).into();
    send(&mut attacker, &proof);
    let refusal: Response = receive(&mut attacker).expect("a refusal");
    let welcome = refusal.replica_welcome.unwrap_or_default();
    assert!(
        !welcome.accepted && welcome.last_applied == 0 && welcome.reason.contains("authentication failed")
    );
    send_forged(&mut attacker);
    assert!(receive::<Response>(&mut attacker).is_none(), "the connection must be closed");

    let acknowledged: Vec<String> = (0..20).map(|index| format!("before{index}")).collect();
    assert_untouched(&chain, &acknowledged.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Forwards connections to a target known later, and once injects a forged
/// frame into the first replication link after its third frame: what a
/// third party on the network between two members could do.
struct SplicingProxy {
    address: String,
    target: Arc<Mutex<Option<String>>>,
    injected: Arc<Mutex<bool>>,
}

impl SplicingProxy {
    fn start() -> SplicingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listener");
        let address = listener.local_addr().expect("proxy address").to_string();
        let target: Arc<Mutex<Option<String>>> = Arc::default();
        let injected: Arc<Mutex<bool>> = Arc::default();
        let (shared_target, shared_injected) = (Arc::clone(&target), Arc::clone(&injected));
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok).take(200) {
                let (target, injected) = (Arc::clone(&shared_target), Arc::clone(&shared_injected));
                thread::spawn(move || splice(client, &target, &injected));
            }
        });
        SplicingProxy { address, target, injected }
    }
}

fn splice(mut client: TcpStream, target: &Mutex<Option<String>>, injected: &Mutex<bool>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let address = loop {
        if let Some(address) = target.lock().unwrap().clone() {
            break address;
        }
        if Instant::now() > deadline {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let Ok(mut server) = TcpStream::connect(&address) else { return };
    let (Ok(mut server_reader), Ok(mut client_writer)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let _ = std::io::copy(&mut server_reader, &mut client_writer);
        let _ = client_writer.shutdown(std::net::Shutdown::Both);
    });
    let mut frames = 0;
    let mut replication = false;
    loop {
        let mut header = [0u8; 4];
        if client.read_exact(&mut header).is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        if client.read_exact(&mut body).is_err() {
            break;
        }
        if frames == 0 {
            replication =
                Request::parse_from_bytes(&body).is_ok_and(|request| request.replica_hello.is_some());
        }
        frames += 1;
        if server.write_all(&header).and_then(|()| server.write_all(&body)).is_err() {
            break;
        }
        let mut injected = injected.lock().unwrap();
        if replication && frames == 3 && !*injected {
            *injected = true;
            let forged = forged_frames()[0].write_to_bytes().expect("encoding");
            let mut frame = ((forged.len() + 32) as u32).to_be_bytes().to_vec();
            frame.extend(forged);
            frame.extend([0u8; 32]);
            let _ = server.write_all(&frame);
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_frame_spliced_into_an_authenticated_link_is_refused() {
    let mut chain = SecureChain::start(1, &[]);
    chain.client().put("before", "1").expect("put");
    let proxy = SplicingProxy::start();
    // The joiner advertises the proxy: its predecessor's link runs through it.
    let joiner = {
        let mut args = chain.secrets.server_args();
        args.extend([chain.zookeeper.address(), "--zk-timeout-ms".into(), "1000".into()]);
        args.extend(["--advertise".into(), proxy.address.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::start_server(64, &args)
    };
    *proxy.target.lock().unwrap() = Some(joiner.address.clone());
    assert!(joiner.wait_until_ready(Duration::from_secs(30)), "{}", joiner.log());
    assert!(*proxy.injected.lock().unwrap(), "the proxy never saw a replication link");
    let refused = joiner.wait_for_stats(Duration::from_secs(10), |stats| stats.peer_auth_failures >= 1);
    assert!(refused.is_some(), "the forged frame was not refused:\n{}", joiner.log());
    chain.servers.push(joiner);
    assert_untouched(&chain, &["before"]);
}

#[test]
fn clients_without_the_secret_are_refused() {
    let chain = SecureChain::start(1, &[]);
    chain.client().put("kept", "1").expect("put with the secret");
    let address = &chain.servers[0].address;

    let mut anonymous = Connection::open(address, &ClientOptions::default()).expect("connect");
    for local_read in [false, true] {
        let mut request = Request::new();
        request.opcode = Opcode::OP_GETTABLE.into();
        request.local_read = local_read;
        match anonymous.call(&request) {
            Ok(reply) if local_read => panic!("the connection should be closed, got {reply:?}"),
            Ok(reply) => assert_eq!(reply.error_code.enum_value(), Ok(ErrorCode::ERR_AUTH), "{reply:?}"),
            Err(error) => assert!(local_read, "{error}"),
        }
    }

    // A wrong proof, sent raw: the server refuses it and closes.
    let mut raw = TcpStream::connect(address).expect("connect");
    let mut request = Request::new();
    request.opcode = Opcode::OP_AUTH.into();
    request.auth = Some(AuthStep { nonce: vec![1; 32], ..Default::default() }).into();
    send(&mut raw, &request);
    let challenge: Response = receive(&mut raw).expect("a challenge");
    assert_eq!(challenge.auth.nonce.len(), 32);
    request.auth = Some(AuthStep { proof: vec![0; 32], ..Default::default() }).into();
    send(&mut raw, &request);
    let refusal: Response = receive(&mut raw).expect("a refusal");
    assert_eq!(refusal.error_code.enum_value(), Ok(ErrorCode::ERR_AUTH));
    assert!(receive::<Response>(&mut raw).is_none());

    // Another secret: the client sees the server cannot prove its secret.
    let other = ClusterSecrets::create().expect("secrets");
    let options = other.client_options(ClientOptions::default()).expect("secret");
    match Connection::open(address, &options) {
        Err(ClientError::Server { code: ErrorCode::ERR_AUTH, .. }) => {}
        other => panic!("expected ERR_AUTH, got {:?}", other.map(|_| "a connection")),
    }
    // The real table-client says so and exits 2.
    let output = common::run_client(&["--server", address], &["get", "kept"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ERR_AUTH"));
    // `members` without the secret: no member could be asked, and why is
    // said (not a table of `unreachable` and exit 0).
    let zookeeper = chain.zookeeper.address();
    let members = common::run_client(&[&zookeeper], &["members"], None);
    let stderr = String::from_utf8_lossy(&members.stderr);
    assert_eq!(members.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("no member of the chain answered") && stderr.contains("ERR_AUTH"), "{stderr}");
    assert!(stderr.contains(&format!(" at {address}: server error (ERR_AUTH)")), "{stderr}");
    let json = common::run_client(&["--json", &zookeeper], &["members"], None);
    assert_eq!(json.status.code(), Some(2));
    let last: serde_json::Value =
        serde_json::from_str(common::stdout(&json).lines().last().expect("a line")).expect("JSON");
    assert_eq!(last["code"], "ERR_AUTH", "{last}");
    assert_untouched(&chain, &["kept"]);
}

#[test]
fn a_peer_with_the_wrong_secret_gets_nothing() {
    let chain = SecureChain::start(2, &[]);
    chain.client().put("secret", "data").expect("put");

    // Its ZooKeeper identity is not the chain's: it cannot even register.
    let impostor_secrets = ClusterSecrets::create().expect("secrets");
    let impostor = chain.start_member_unready(&impostor_secrets.server_args());
    assert!(!impostor.wait_until_ready(REFUSED_PEER_WATCH), "{}", impostor.log());
    let registered = impostor.stats().expect("the impostor's stats").node;
    assert_eq!(registered, "", "the impostor has no node in the chain");
    // Why, for whoever reads the log (the message is what is checked here).
    assert!(impostor.log().contains("NoAuth"), "{}", impostor.log());

    // Listed in ZooKeeper anyway (by someone holding the chain's identity,
    // say): the tail still sends it nothing, as it cannot prove the secret.
    let outsider_secret =
        ["--peer-secret-file".to_owned(), impostor_secrets.peer_file().display().to_string()];
    let mut args = vec![chain.zookeeper.address(), "--chain".into(), "/elsewhere".into()];
    args.extend(outsider_secret);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listed = common::start_server(64, &args);
    let zookeeper =
        ZooKeeper::connect(&chain.zookeeper.address(), Duration::from_secs(5), |_: WatchedEvent| {})
            .expect("ZooKeeper session");
    let secret = Secret::load(&chain.secrets.peer_file()).expect("peer secret");
    let identity = format!("{ZOOKEEPER_DIGEST_USER}:{}", secret.zookeeper_password());
    zookeeper.add_auth("digest", identity.into_bytes()).expect("add_auth");
    zookeeper
        .create(
            "/chain/node",
            format!("{} joining impostor server:99", listed.address).into_bytes(),
            Acl::read_unsafe().iter().chain(Acl::creator_all()).cloned().collect(),
            CreateMode::EphemeralSequential,
        )
        .expect("listing the impostor");
    let tail = &chain.servers[1];
    let refused = tail.wait_for_stats(REFUSED_PEER_WATCH, |stats| stats.peer_auth_failures >= 1);
    assert!(refused.is_some(), "the tail did not refuse the listed impostor:\n{}", tail.log());
    let listed_stats = listed.stats().expect("the listed impostor's stats");
    assert_eq!((listed_stats.state_transfers_received, listed_stats.keys), (0, 0), "{}", listed.log());
    assert_eq!(tail.stats().expect("the tail's stats").state_transfers_sent, 0, "{}", tail.log());
    drop(zookeeper);
    assert_untouched(&chain, &["secret"]);
}

#[test]
fn a_chain_member_binds_loopback_only_without_a_peer_secret() {
    let zookeeper = start_zookeeper();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_table-server"))
            .args(["0", "64", &zookeeper.address(), "--bind", "0.0.0.0"])
            .args(extra)
            .output()
            .expect("running table-server")
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs --peer-secret-file"));
    let secrets = ClusterSecrets::create().expect("secrets");
    let same = secrets.peer_file().display().to_string();
    let shared = run(&["--peer-secret-file", &same, "--client-secret-file", &same]);
    assert_eq!(shared.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&shared.stderr).contains("hold the same secret"));

    let insecure = common::start_server(64, &[&zookeeper.address(), "--bind", "0.0.0.0", "--insecure"]);
    assert_eq!(peer_security(&insecure), "insecure");
    let loopback = common::start_server(64, &[&zookeeper.address()]);
    assert_eq!(peer_security(&loopback), "loopback-only");
    let secured = common::start_server(64, &[&zookeeper.address(), "--peer-secret-file", &same]);
    assert_eq!(peer_security(&secured), "peer-secret");
}

/// What a server says in `stats` about who may join or feed its chain.
fn peer_security(server: &ServerProcess) -> String {
    server.stats().expect("stats").peer_security
}

#[test]
fn tls_refuses_plaintext_clients_other_cas_and_foreign_peers() {
    let certificates = TestCertificates::create();
    let mut chain = SecureChain::start(2, &certificates.server_args());
    chain.options.tls = Some(ClientTls::load(std::path::Path::new(&certificates.ca())).expect("CA"));
    chain.client().put("over", "tls").expect("put over TLS");
    assert_eq!(chain.client().get("over").expect("get over TLS"), Some(b"tls".to_vec()));
    let address = chain.servers[1].address.clone();

    // A plaintext client: told so at once, in a frame it can read.
    let started = Instant::now();
    let plaintext = chain.secrets.client_options(ClientOptions::default()).expect("secret");
    match Connection::open(&address, &plaintext) {
        Err(ClientError::Server { code: ErrorCode::ERR_AUTH, message }) => {
            assert!(message.contains("TLS connections only"), "{message}")
        }
        other => panic!("expected a TLS-only refusal, got {:?}", other.map(|_| "a connection")),
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // A client that trusts another CA: the handshake fails, not retried.
    let other = TestCertificates::create();
    let mut foreign = chain.options.clone();
    foreign.tls = Some(ClientTls::load(std::path::Path::new(&other.ca())).expect("CA"));
    match Connection::open(&address, &foreign) {
        Err(ClientError::Protocol(message)) => assert!(message.contains("certificate"), "{message}"),
        other => panic!("expected a certificate error, got {:?}", other.map(|_| "a connection")),
    }

    // A peer whose certificate another CA signed, with the right secret.
    let outsider = chain.start_member_unready(&other.server_args());
    assert!(!outsider.wait_until_ready(REFUSED_PEER_WATCH), "{}", outsider.log());
    let outsider_stats = outsider.stats().expect("the outsider's stats");
    assert_eq!((outsider_stats.state_transfers_received, outsider_stats.keys), (0, 0), "{}", outsider.log());
    assert_untouched(&chain, &["over"]);
}

impl SecureChain {
    /// A member that is not expected to become ready.
    fn start_member_unready(&self, extra: &[String]) -> ServerProcess {
        let mut args = self.secrets.server_args();
        args.extend([self.zookeeper.address(), "--zk-timeout-ms".into(), "1000".into()]);
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::start_server(64, &args)
    }
}
