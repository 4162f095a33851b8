//! Request handling: one decoded request in, one response out, against the
//! table. No sockets here, so every rule about bad input is unit-testable.

use std::time::Instant;

use protobuf::Message;

use crate::limits::Limits;
use crate::proto::{Entry, ErrorCode, Opcode, Request, Response};
use crate::stats::ServerStats;
use crate::table::Table;

/// The state every connection thread shares.
pub struct Service {
    /// The data.
    pub table: Table,
    /// Counters for `stats`.
    pub stats: ServerStats,
    /// Key and value limits checked here; the rest are the server's.
    pub limits: Limits,
}

/// A request that cannot be executed, with the reply code that says why.
struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

/// An error reply.
pub fn error_response(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Response {
    let mut response = Response::new();
    response.opcode = Opcode::OP_ERROR.into();
    response.request_id = request_id;
    response.error_code = code.into();
    response.error_message = message.into();
    response
}

impl Service {
    pub fn new(table_stripes: usize, limits: Limits) -> Service {
        Service { table: Table::new(table_stripes), stats: ServerStats::default(), limits }
    }

    /// Decodes and executes one frame body.
    pub fn handle_frame(&self, body: &[u8]) -> Response {
        match Request::parse_from_bytes(body) {
            Ok(request) => self.handle(request),
            Err(error) => {
                self.stats.record_error();
                error_response(0, ErrorCode::ERR_MALFORMED, format!("request does not decode: {error}"))
            }
        }
    }

    /// Executes one request.
    pub fn handle(&self, request: Request) -> Response {
        let started = Instant::now();
        let request_id = request.request_id;
        match self.execute(request) {
            Ok((opcode, mut response)) => {
                self.stats.record_operation(opcode, started.elapsed());
                response.opcode = opcode.into();
                response.request_id = request_id;
                response
            }
            Err(refusal) => {
                self.stats.record_error();
                error_response(request_id, refusal.code, refusal.message)
            }
        }
    }

    fn execute(&self, request: Request) -> Result<(Opcode, Response), Refusal> {
        let opcode = request.opcode.enum_value().map_err(|value| {
            Refusal::new(ErrorCode::ERR_UNKNOWN_OPCODE, format!("unknown opcode {value}"))
        })?;
        let mut response = Response::new();
        match opcode {
            Opcode::OP_PUT => {
                let key = self.checked_key(&request)?;
                let value = self.checked_value(request.value)?;
                self.table.put(&key, value);
            }
            Opcode::OP_GET => {
                let key = self.checked_key(&request)?;
                if let Some(value) = self.table.get(&key) {
                    response.found = true;
                    response.value = value;
                }
            }
            Opcode::OP_DEL => {
                let key = self.checked_key(&request)?;
                response.found = self.table.delete(&key);
            }
            Opcode::OP_SIZE => response.size = self.table.len(),
            Opcode::OP_GETKEYS => response.keys = self.table.keys(),
            Opcode::OP_GETTABLE => {
                response.entries = self
                    .table
                    .entries()
                    .into_iter()
                    .map(|(key, value)| {
                        let mut entry = Entry::new();
                        entry.key = key;
                        entry.value = value;
                        entry
                    })
                    .collect();
            }
            Opcode::OP_STATS => {
                response.statistics = Some(self.stats.snapshot(&self.table)).into();
            }
            Opcode::OP_UNSPECIFIED | Opcode::OP_ERROR => {
                return Err(Refusal::new(
                    ErrorCode::ERR_UNKNOWN_OPCODE,
                    format!("{opcode:?} is not a request opcode"),
                ));
            }
        }
        Ok((opcode, response))
    }

    fn checked_key(&self, request: &Request) -> Result<String, Refusal> {
        let key = match &request.key {
            Some(key) if !key.is_empty() => key,
            _ => return Err(Refusal::new(ErrorCode::ERR_MISSING_FIELD, "a non-empty key is required")),
        };
        if key.len() > self.limits.key_bytes_max {
            return Err(Refusal::new(
                ErrorCode::ERR_TOO_LARGE,
                format!(
                    "key of {} bytes is over the maximum of {} bytes",
                    key.len(),
                    self.limits.key_bytes_max
                ),
            ));
        }
        Ok(key.clone())
    }

    fn checked_value(&self, value: Option<Vec<u8>>) -> Result<Vec<u8>, Refusal> {
        let value =
            value.ok_or_else(|| Refusal::new(ErrorCode::ERR_MISSING_FIELD, "put requires a value"))?;
        if value.len() > self.limits.value_bytes_max {
            return Err(Refusal::new(
                ErrorCode::ERR_TOO_LARGE,
                format!(
                    "value of {} bytes is over the maximum of {} bytes",
                    value.len(),
                    self.limits.value_bytes_max
                ),
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        let limits = Limits { key_bytes_max: 8, value_bytes_max: 16, ..Limits::default() };
        Service::new(4, limits)
    }

    fn request(opcode: Opcode, key: Option<&str>, value: Option<&[u8]>) -> Request {
        let mut request = Request::new();
        request.opcode = opcode.into();
        request.request_id = 9;
        request.key = key.map(str::to_owned);
        request.value = value.map(<[u8]>::to_vec);
        request
    }

    fn error_code(response: &Response) -> ErrorCode {
        assert_eq!(response.opcode.enum_value(), Ok(Opcode::OP_ERROR));
        response.error_code.enum_value().unwrap()
    }

    #[test]
    fn put_get_del_size() {
        let service = service();
        let put = service.handle(request(Opcode::OP_PUT, Some("k"), Some(b"v")));
        assert_eq!(put.opcode.enum_value(), Ok(Opcode::OP_PUT));
        assert_eq!(put.request_id, 9);
        let get = service.handle(request(Opcode::OP_GET, Some("k"), None));
        assert!(get.found);
        assert_eq!(get.value, b"v");
        assert_eq!(service.handle(request(Opcode::OP_SIZE, None, None)).size, 1);
        assert!(service.handle(request(Opcode::OP_DEL, Some("k"), None)).found);
        assert!(!service.handle(request(Opcode::OP_DEL, Some("k"), None)).found);
        assert!(!service.handle(request(Opcode::OP_GET, Some("k"), None)).found);
    }

    #[test]
    fn empty_value_is_a_value() {
        let service = service();
        service.handle(request(Opcode::OP_PUT, Some("k"), Some(b"")));
        assert!(service.handle(request(Opcode::OP_GET, Some("k"), None)).found);
    }

    #[test]
    fn bad_requests_get_error_codes() {
        let service = service();
        let cases = [
            (request(Opcode::OP_PUT, None, Some(b"v")), ErrorCode::ERR_MISSING_FIELD),
            (request(Opcode::OP_PUT, Some(""), Some(b"v")), ErrorCode::ERR_MISSING_FIELD),
            (request(Opcode::OP_PUT, Some("k"), None), ErrorCode::ERR_MISSING_FIELD),
            (request(Opcode::OP_GET, None, None), ErrorCode::ERR_MISSING_FIELD),
            (request(Opcode::OP_PUT, Some("key-too-long"), Some(b"v")), ErrorCode::ERR_TOO_LARGE),
            (request(Opcode::OP_PUT, Some("k"), Some(&[0; 17])), ErrorCode::ERR_TOO_LARGE),
            (request(Opcode::OP_UNSPECIFIED, None, None), ErrorCode::ERR_UNKNOWN_OPCODE),
            (request(Opcode::OP_ERROR, None, None), ErrorCode::ERR_UNKNOWN_OPCODE),
        ];
        for (bad, expected) in cases {
            let response = service.handle(bad);
            assert_eq!(error_code(&response), expected, "{}", response.error_message);
            assert!(!response.error_message.is_empty());
        }
        assert!(service.table.is_empty(), "no refused request may change the table");
        assert_eq!(service.stats.snapshot(&service.table).errors, 8);
    }

    #[test]
    fn unknown_opcode_number() {
        // Field 1 (opcode) = 77, a value the enum does not define.
        let response = service().handle_frame(&[0x08, 77]);
        assert_eq!(error_code(&response), ErrorCode::ERR_UNKNOWN_OPCODE);
    }

    #[test]
    fn garbage_frame() {
        let response = service().handle_frame(&[0xff, 0xff, 0xff]);
        assert_eq!(error_code(&response), ErrorCode::ERR_MALFORMED);
    }

    #[test]
    fn stats_reflect_operations() {
        let service = service();
        service.handle(request(Opcode::OP_PUT, Some("k"), Some(b"v")));
        service.handle(request(Opcode::OP_GET, Some("k"), None));
        let response = service.handle(request(Opcode::OP_STATS, None, None));
        let statistics = response.statistics.unwrap();
        assert_eq!(statistics.puts, 1);
        assert_eq!(statistics.gets, 1);
        assert_eq!(statistics.operations, 2);
        assert_eq!(statistics.keys, 1);
    }
}
