//! Connection limits through the real binaries: `--max-clients` lowered to
//! what the open-files limit allows (so every connection past it gets an
//! `ERR_TOO_MANY_CLIENTS` reply instead of a failed accept and a reset), and
//! `--max-clients-per-host`.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use chaintable::proto::{ErrorCode, Opcode};
use common::{RunClient, raw_call, start_server, start_server_with_open_files};

/// Opens a connection and has one request answered on it.
fn served_connection(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connecting");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = raw_call(&stream, Opcode::OP_SIZE).expect("a reply");
    assert_eq!(reply.opcode.enum_value(), Ok(Opcode::OP_SIZE), "{}", reply.error_message);
    stream
}

/// With 128 open files, the server says it lowers `--max-clients` to 56
/// (128 less 64 for itself, less 8 accepted over the limit to refuse them
/// with a reply), serves 56 connections at once, and refuses the 57th with
/// a reply.
#[test]
fn max_clients_fits_the_open_files_limit() {
    let server =
        start_server_with_open_files(4, &["--max-clients", "1000", "--max-clients-per-host", "1000"], 128);
    assert!(
        server.log().contains("--max-clients lowered from 1000 to 56: the open-files limit is 128"),
        "{}",
        server.log()
    );
    let open: Vec<TcpStream> = (0..56).map(|_| served_connection(&server.address)).collect();
    for _ in 0..3 {
        let extra = TcpStream::connect(&server.address).expect("connecting");
        extra.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reply = raw_call(&extra, Opcode::OP_SIZE).expect("a refusal, not a reset");
        assert_eq!(
            reply.error_code.enum_value(),
            Ok(ErrorCode::ERR_TOO_MANY_CLIENTS),
            "{}",
            reply.error_message
        );
        assert!(reply.error_message.contains("server is full (56 clients)"), "{}", reply.error_message);
    }
    drop(open);
    // Room again once they are gone (their threads notice the close).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let output = server.client(&["size"]);
        if output.status.code() == Some(0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three connections from 127.0.0.1 are served; a fourth is refused with a
/// message naming the host, while the server goes on serving the three.
#[test]
fn one_host_cannot_take_more_than_its_share() {
    let server = start_server(4, &["--max-clients-per-host", "3"]);
    let open: Vec<TcpStream> = (0..3).map(|_| served_connection(&server.address)).collect();
    let refused = server.client(&["size"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ERR_TOO_MANY_CLIENTS"), "{stderr}");
    assert!(stderr.contains("too many connections from 127.0.0.1 (3; --max-clients-per-host 3)"), "{stderr}");
    for stream in &open {
        let reply = raw_call(stream, Opcode::OP_SIZE).expect("still served");
        assert_eq!(reply.opcode.enum_value(), Ok(Opcode::OP_SIZE));
    }
}
