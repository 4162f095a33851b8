//! The standalone server through the real binaries: the client contract
//! (stdout and exit codes), concurrency, large values, bad input, limits and
//! shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use chaintable::client::Client;
use chaintable::client::connection::{ClientOptions, Connection};
use chaintable::client::error::ClientError;
use chaintable::proto::{ErrorCode, Opcode, Request, Response};
use chaintable::wire::{encode_frame, read_frame};
use common::{RunClient, ServerProcess, assert_client, run_client, start_server, stdout};
use protobuf::Message;

fn client_of(server: &ServerProcess) -> Client {
    Client::new(&server.address, ClientOptions::default())
}

#[test]
fn every_command_through_the_client_binary() {
    let server = start_server(16, &[]);
    assert_client(&server.client(&["size"]), 0, "0\n");
    assert_client(&server.client(&["get", "missing"]), 1, "");
    assert_client(&server.client(&["del", "missing"]), 1, "");
    assert_client(&server.client(&["put", "fruit", "apple"]), 0, "OK\n");
    assert_client(&server.client(&["put", "veg", "green", "beans"]), 0, "OK\n");
    assert_client(&server.client(&["p", "tab", "a\tb"]), 0, "OK\n");
    assert_client(&server.client(&["get", "fruit"]), 0, "apple\n");
    assert_client(&server.client(&["g", "veg"]), 0, "green beans\n");
    assert_client(&server.client(&["size"]), 0, "3\n");
    assert_client(&server.client(&["s"]), 0, "3\n");
    assert_client(&server.client(&["getkeys"]), 0, "fruit\ntab\nveg\n");
    assert_client(&server.client(&["k"]), 0, "fruit\ntab\nveg\n");
    let table = "fruit\tapple\ntab\ta\\tb\nveg\tgreen beans\n";
    assert_client(&server.client(&["gettable"]), 0, table);
    assert_client(&server.client(&["t"]), 0, table);
    assert_client(&server.client(&["del", "fruit"]), 0, "OK\n");
    assert_client(&server.client(&["d", "veg"]), 0, "OK\n");
    assert_client(&server.client(&["get", "fruit"]), 1, "");

    let stats = stdout(&server.client(&["stats"]));
    for name in ["operations", "operation_time_us", "clients", "puts", "gets", "dels", "keys", "uptime_s"] {
        assert!(
            stats.lines().any(|line| line.starts_with(&format!("{name}: "))),
            "{name} missing in {stats}"
        );
    }
    assert!(stats.contains("puts: 3\n"), "{stats}");
    assert!(stats.contains("keys: 1\n"), "{stats}");
    assert!(stats.contains("clients: 1\n"), "the stats client itself is connected: {stats}");
    let short_form = server.client(&["st"]);
    assert_eq!(short_form.status.code(), Some(0));
    let names =
        |text: &str| text.lines().map(|line| line.split(": ").next().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&stdout(&short_form)), names(&stats));
}

#[test]
fn client_usage_errors_and_unreachable_server_exit_2() {
    let server = start_server(4, &[]);
    for args in [&["frobnicate"][..], &["put", "only-key"], &["get"], &["size", "extra"]] {
        let output = server.client(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} must explain itself on stderr");
    }
    // A port nobody listens on: bind one, learn it, close it.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let output = run_client(&["--server", &free.to_string(), "--timeout-ms", "2000"], &["get", "k"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unreachable"));
    // Chain mode with no ZooKeeper there fails clearly within its deadline.
    let output = run_client(&["--timeout-ms", "1000", &free.to_string()], &["get", "k"], None);
    assert_eq!(output.status.code(), Some(2));
    let expected = format!("no chain at {free}/chain: ZooKeeper unreachable");
    assert!(String::from_utf8_lossy(&output.stderr).contains(&expected), "{output:?}");
}

#[test]
fn non_utf8_values_are_escaped_in_gettable() {
    let server = start_server(4, &[]);
    client_of(&server).put("bin", vec![b'a', 0xff, 0x00, b'\n']).unwrap();
    assert_client(&server.client(&["gettable"]), 0, "bin\ta\\xff\\x00\\n\n");
    // get prints the raw bytes.
    assert_eq!(server.client(&["get", "bin"]).stdout, vec![b'a', 0xff, 0x00, b'\n', b'\n']);
}

#[test]
fn shell_reads_commands_from_stdin_without_prompt() {
    let server = start_server(4, &[]);
    let output =
        server.client_shell(b"put greeting hello,  big world\nget greeting\n\nsize\nget nothing\nq\nsize\n");
    assert_client(&output, 0, "OK\nhello,  big world\n1\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing: not found"));
    // A failing line is reported and makes the scripted shell exit 2.
    let output = server.client_shell(b"bogus\nsize\n");
    assert_client(&output, 2, "1\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown command"));
}

#[test]
fn many_concurrent_clients() {
    const CLIENTS: usize = 128;
    const OPERATIONS: usize = 50;
    let server = start_server(64, &[]);
    let address = server.address.clone();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let address = address.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut client = Client::new(&address, ClientOptions::default());
                // Every client connected at once before the load starts.
                assert_eq!(client.size().map(|_| ()), Ok(()));
                barrier.wait();
                for operation in 0..OPERATIONS {
                    let key = format!("c{worker}-{operation}");
                    client.put(&key, key.as_bytes()).unwrap();
                    assert_eq!(client.get(&key).unwrap(), Some(key.as_bytes().to_vec()));
                    client.get("shared").unwrap();
                    if operation % 5 == 0 {
                        assert!(client.delete(&key).unwrap());
                    }
                }
                client.put("shared", format!("{worker}")).unwrap();
                client
            })
        })
        .collect();
    let mut clients: Vec<Client> = workers.into_iter().map(|worker| worker.join().unwrap()).collect();
    let statistics = clients[0].stats().unwrap();
    assert_eq!(statistics.clients, CLIENTS as u64);
    let expected_keys = CLIENTS * (OPERATIONS - OPERATIONS / 5) + 1;
    assert_eq!(clients[0].size().unwrap(), expected_keys as u64);
    assert_eq!(clients[1].keys().unwrap().len(), expected_keys);
    assert_eq!(statistics.puts, (CLIENTS * (OPERATIONS + 1)) as u64);
    clients.clear();
}

#[test]
fn one_mebibyte_values() {
    let server = start_server(8, &[]);
    let mut client = client_of(&server);
    let values: Vec<Vec<u8>> =
        (0..4u8).map(|seed| (0..1 << 20).map(|index| (index as u8) ^ seed).collect()).collect();
    for (index, value) in values.iter().enumerate() {
        client.put(&format!("big{index}"), value.clone()).unwrap();
    }
    for (index, value) in values.iter().enumerate() {
        assert_eq!(client.get(&format!("big{index}")).unwrap().as_ref(), Some(value));
    }
    let entries = client.entries().unwrap();
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|(_, value)| value.len() == 1 << 20));
    // Through the client binary too (shell mode takes the value from stdin).
    let text_value = "x".repeat(1 << 20);
    let output = server.client_shell(format!("put text {text_value}\n").as_bytes());
    assert_client(&output, 0, "OK\n");
    assert_eq!(server.client(&["get", "text"]).stdout.len(), (1 << 20) + 1);
}

/// Sends raw bytes on a fresh connection and returns what the server answers
/// before it closes the connection (or stops writing for a second).
fn raw_exchange(server: &ServerProcess, bytes: &[u8], close_write: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(&server.address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(bytes).unwrap();
    if close_write {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

fn decode_replies(mut bytes: &[u8]) -> Vec<Response> {
    let mut replies = Vec::new();
    let mut body = Vec::new();
    while read_frame(&mut bytes, 1 << 26, &mut body).unwrap() {
        replies.push(Response::parse_from_bytes(&body).unwrap());
    }
    replies
}

fn error_code(response: &Response) -> ErrorCode {
    assert_eq!(response.opcode.enum_value(), Ok(Opcode::OP_ERROR), "{response:?}");
    response.error_code.enum_value().unwrap()
}

#[test]
fn bad_input_gets_errors_and_service_continues() {
    let server = start_server(8, &["--max-frame", "65536", "--max-key", "32", "--max-value", "1024"]);
    let mut bystander = client_of(&server);
    bystander.put("safe", "kept").unwrap();

    // Garbage in a well-formed frame: an error reply, and the connection stays usable.
    let mut garbage = vec![0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff];
    let mut size_request = Vec::new();
    let mut request = Request::new();
    request.opcode = Opcode::OP_SIZE.into();
    request.request_id = 2;
    encode_frame(&request, 1 << 20, &mut size_request).unwrap();
    garbage.extend_from_slice(&size_request);
    let replies = decode_replies(&raw_exchange(&server, &garbage, true));
    assert_eq!(replies.len(), 2);
    assert_eq!(error_code(&replies[0]), ErrorCode::ERR_MALFORMED);
    assert_eq!(replies[1].size, 1);

    // A key that is not UTF-8: field 4 (key) with bytes ff fe.
    let replies = decode_replies(&raw_exchange(&server, &[0, 0, 0, 6, 0x08, 2, 0x22, 2, 0xff, 0xfe], true));
    assert_eq!(error_code(&replies[0]), ErrorCode::ERR_MALFORMED);

    // An unknown opcode.
    let replies = decode_replies(&raw_exchange(&server, &[0, 0, 0, 2, 0x08, 99], true));
    assert_eq!(error_code(&replies[0]), ErrorCode::ERR_UNKNOWN_OPCODE);

    // A length far over the maximum: an error, then the connection is closed.
    let replies = decode_replies(&raw_exchange(&server, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3], false));
    assert_eq!(replies.len(), 1);
    assert_eq!(error_code(&replies[0]), ErrorCode::ERR_TOO_LARGE);

    // Half a header, and half a body, then the client vanishes.
    assert!(raw_exchange(&server, &[0, 0], true).is_empty());
    assert!(raw_exchange(&server, &[0, 0, 0, 100, 1, 2, 3], true).is_empty());

    // Key and value limits.
    let too_long_key = "k".repeat(33);
    assert!(matches!(
        bystander.put(&too_long_key, "v"),
        Err(ClientError::Server { code: ErrorCode::ERR_TOO_LARGE, .. })
    ));
    assert!(matches!(
        bystander.put("k", vec![0; 1025]),
        Err(ClientError::Server { code: ErrorCode::ERR_TOO_LARGE, .. })
    ));
    // A reply over the frame limit is refused with a reason, before it is
    // built; the client's listing pages through SCAN instead.
    for index in 0..100 {
        bystander.put(&format!("fill{index}"), vec![1; 1000]).unwrap();
    }
    let mut raw = Connection::open(&server.address, &ClientOptions::default()).unwrap();
    let mut gettable = Request::new();
    gettable.opcode = Opcode::OP_GETTABLE.into();
    assert_eq!(error_code(&raw.call(&gettable).unwrap()), ErrorCode::ERR_RESPONSE_TOO_LARGE);
    assert_eq!(bystander.entries().unwrap().len(), 101);

    // Everyone else was served throughout, and nothing was lost.
    assert_eq!(bystander.get("safe").unwrap(), Some(b"kept".to_vec()));
    assert_eq!(bystander.size().unwrap(), 101);
    assert!(bystander.stats().unwrap().errors >= 7);
}

#[test]
fn max_clients_is_enforced() {
    let server = start_server(4, &["--max-clients", "3", "--max-clients-per-host", "3"]);
    let mut connected: Vec<Client> = (0..3).map(|_| client_of(&server)).collect();
    for client in &mut connected {
        client.size().unwrap();
    }
    let mut extra = client_of(&server);
    assert!(matches!(extra.size(), Err(ClientError::Server { code: ErrorCode::ERR_TOO_MANY_CLIENTS, .. })));
    let output = server.client(&["size"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("full"));
    // A slot frees up when a client leaves.
    connected.pop();
    let mut waited = 0;
    loop {
        match extra.size() {
            Ok(size) => break assert_eq!(size, 0),
            Err(_) if waited < 50 => {
                waited += 1;
                thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("slot never freed: {error}"),
        }
    }
}

#[test]
fn idle_connections_are_closed_and_clients_reconnect() {
    let server = start_server(4, &["--idle-timeout-ms", "200"]);
    let mut client = client_of(&server);
    client.put("k", "v").unwrap();
    let mut raw = Connection::open(&server.address, &ClientOptions::default()).unwrap();
    thread::sleep(Duration::from_millis(600));
    assert!(raw.is_stale(), "the server should have closed the idle connection");
    let mut request = Request::new();
    request.opcode = Opcode::OP_SIZE.into();
    assert!(raw.call(&request).is_err());
    // The client library notices and reconnects transparently.
    assert_eq!(client.get("k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(client.stats().unwrap().clients, 1);
}

#[test]
fn sigterm_shuts_down_cleanly_with_clients_connected() {
    let mut server = start_server(4, &[]);
    let mut clients: Vec<Client> = (0..20).map(|_| client_of(&server)).collect();
    for client in &mut clients {
        client.put("k", "v").unwrap();
    }
    // A client stuck in the middle of a frame must not hold shutdown up.
    let mut half = TcpStream::connect(&server.address).unwrap();
    half.write_all(&[0, 0, 0, 50, 1]).unwrap();
    server.signal("TERM").unwrap();
    let status = server.wait_exit(Duration::from_secs(10)).expect("server did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    assert!(server.log().contains("shut down"));
    assert!(clients[0].size().is_err());
}

#[test]
fn sigint_shuts_down_cleanly() {
    let mut server = start_server(4, &[]);
    client_of(&server).put("k", "v").unwrap();
    server.signal("INT").unwrap();
    let status = server.wait_exit(Duration::from_secs(10)).expect("server did not exit after SIGINT");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn refused_clients_that_keep_sending_do_not_block_others() {
    let server = start_server(4, &["--max-clients", "1"]);
    let mut first = client_of(&server);
    first.size().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..12)
        .map(|_| {
            let (address, stop) = (server.address.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let Ok(mut stream) = TcpStream::connect(&address) else { return };
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                let started = std::time::Instant::now();
                while !stop.load(std::sync::atomic::Ordering::SeqCst)
                    && started.elapsed() < Duration::from_secs(5)
                {
                    if stream.write_all(&[0x08; 1024]).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    drop(first);
    let started = std::time::Instant::now();
    let mut late = client_of(&server);
    let served = loop {
        match late.size() {
            Ok(size) => break size,
            Err(_) if started.elapsed() < Duration::from_secs(4) => thread::sleep(Duration::from_millis(100)),
            Err(error) => panic!("a free slot was not given out while refused clients kept sending: {error}"),
        }
    };
    assert_eq!(served, 0);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for flooder in flooders {
        flooder.join().unwrap();
    }
}
