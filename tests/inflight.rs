//! The in-flight budget and the frame deadline through the real server:
//! 50 connections sending 64 MiB frames at once cost the server at most
//! `--max-inflight` (its resident memory is read from /proc), and a client
//! sending one byte every 1.5 s is closed `--frame-timeout-ms` after its
//! frame's first byte.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chaintable::client::Client;
use chaintable::client::connection::ClientOptions;
use chaintable::proto::{ErrorCode, Opcode, Response};
use chaintable::wire::read_frame;
use common::{raw_call, start_server};
use protobuf::Message;

const MIB: u64 = 1024 * 1024;

/// A `kB` line of /proc/<pid>/status, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
    let line = status.lines().find(|line| line.starts_with(field)).expect("field in /proc status");
    let kilobytes: u64 =
        line.split_whitespace().nth(1).and_then(|number| number.parse().ok()).expect("a number");
    kilobytes * 1024
}

/// Sends one frame announcing `length` bytes of junk (it does not decode as
/// a request), in 1 MiB writes, then reads the reply.
fn send_junk_frame(address: &str, length: u32) -> Response {
    let mut stream = TcpStream::connect(address).expect("connecting");
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    stream.write_all(&length.to_be_bytes()).unwrap();
    let chunk = vec![0xffu8; MIB as usize];
    let mut sent = 0;
    while sent < length as usize {
        let size = chunk.len().min(length as usize - sent);
        stream.write_all(&chunk[..size]).expect("the server reads the frame in time");
        sent += size;
    }
    let mut body = Vec::new();
    assert!(read_frame(&mut stream, 1 << 20, &mut body).expect("a reply"), "closed without a reply");
    Response::parse_from_bytes(&body).expect("a reply that decodes")
}

#[test]
fn fifty_large_frames_at_once_stay_within_the_budget() {
    let server = start_server(4, &["--max-inflight", "256mb", "--frame-timeout-ms", "120000"]);
    let pid = server.pid();
    let started_rss = status_bytes(pid, "VmRSS:");
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(status_bytes(pid, "VmRSS:"));
                thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let frame_bytes = (64 * MIB) as u32;
    let senders: Vec<_> = (0..50)
        .map(|_| {
            let address = server.address.clone();
            thread::spawn(move || send_junk_frame(&address, frame_bytes))
        })
        .collect();
    // A small request is not stuck behind the large frames.
    thread::sleep(Duration::from_millis(500));
    let bystander = TcpStream::connect(&server.address).expect("connecting");
    bystander.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let asked = Instant::now();
    let reply = raw_call(&bystander, Opcode::OP_SIZE).expect("a reply");
    assert_eq!(reply.opcode.enum_value(), Ok(Opcode::OP_SIZE), "{}", reply.error_message);
    let small_request_took = asked.elapsed();
    for sender in senders {
        let reply = sender.join().expect("a sender thread");
        assert_eq!(reply.error_code.enum_value(), Ok(ErrorCode::ERR_MALFORMED), "{}", reply.error_message);
    }
    stop.store(true, Ordering::Relaxed);
    let sampled_peak = sampler.join().unwrap();
    let high_water = status_bytes(pid, "VmHWM:");
    eprintln!(
        "server RSS: {} MiB at start, sampled peak {} MiB, high-water mark {} MiB; a small request during \
         the flood took {small_request_took:?}",
        started_rss / MIB,
        sampled_peak / MIB,
        high_water / MIB
    );
    assert!(small_request_took < Duration::from_secs(5), "{small_request_took:?}");
    // Four frames of 64 MiB fit the budget at a time; without it, 50 would
    // be received at once (3.2 GiB).
    assert!(high_water < started_rss + 256 * MIB + 32 * MIB, "high-water mark {} MiB", high_water / MIB);
    assert!(high_water > 128 * MIB, "the frames were received: high-water mark {} MiB", high_water / MIB);
    let stats = Client::new(&server.address, ClientOptions::default()).stats().expect("stats");
    assert_eq!(stats.errors, 50);
}

/// A frame larger than the whole budget can never fit: refused at once.
#[test]
fn a_frame_larger_than_the_budget_is_refused() {
    let server = start_server(4, &["--max-inflight", "1mb"]);
    let mut stream = TcpStream::connect(&server.address).expect("connecting");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&(2 * MIB as u32).to_be_bytes()).unwrap();
    let mut body = Vec::new();
    assert!(read_frame(&mut stream, 1 << 20, &mut body).unwrap());
    let reply = Response::parse_from_bytes(&body).unwrap();
    assert_eq!(reply.error_code.enum_value(), Ok(ErrorCode::ERR_TOO_LARGE), "{}", reply.error_message);
}

/// One byte every 1.5 s: the idle timeout (per read) never fires, but the
/// frame's deadline does, 3 s after its first byte. Other clients are
/// served meanwhile.
#[test]
fn a_slow_frame_is_closed_at_its_deadline() {
    let server = start_server(4, &["--frame-timeout-ms", "3000"]);
    let mut slow = TcpStream::connect(&server.address).expect("connecting");
    slow.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let frame = [0u8, 0, 0, 20];
    let first_byte = Instant::now();
    let mut closed_after = None;
    for byte in frame.iter().chain([0x08u8; 20].iter()) {
        if slow.write_all(&[*byte]).is_err() {
            closed_after = Some(first_byte.elapsed());
            break;
        }
        let mut probe = [0u8; 64];
        match slow.read(&mut probe) {
            Ok(count) if count > 0 => panic!("the server replied to an incomplete frame: {count} bytes"),
            // No news within 1.5 s: send the next byte.
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(_) | Err(_) => {
                closed_after = Some(first_byte.elapsed());
                break;
            }
        }
        let other = TcpStream::connect(&server.address).expect("connecting");
        other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(raw_call(&other, Opcode::OP_SIZE).is_some(), "others are served meanwhile");
    }
    let closed_after = closed_after.expect("the slow connection was closed");
    assert!(
        closed_after >= Duration::from_millis(2900) && closed_after < Duration::from_secs(8),
        "closed {closed_after:?} after the first byte"
    );
    let stats = Client::new(&server.address, ClientOptions::default()).stats().expect("stats");
    assert_eq!(stats.late_frames, 1);
}
