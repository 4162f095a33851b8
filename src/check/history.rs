//! What the clients of a `table-check` run did and saw, and what the
//! nemesis did: recorded during the run, saved as JSON, checked afterwards
//! (also offline, from the file).

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::linearizability::{Action, Operation};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Put,
    Get,
    Del,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Which client thread issued it.
    pub client: u64,
    pub key: String,
    pub op: OpKind,
    /// Put: the value written, unique in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// Get: the value read; `None` means the key was absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<u64>,
    /// Del: whether the server said the key existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<bool>,
    /// Microseconds since the start of the run.
    pub call_us: u64,
    /// `None`: the outcome is unknown (the client gave up); a write may
    /// still have been applied at any later time.
    pub return_us: Option<u64>,
}

impl Record {
    /// The checker's view of this record.
    pub fn operation(&self) -> Operation {
        let action = match self.op {
            OpKind::Put => Action::Put { value: self.value.unwrap_or(u64::MAX) },
            OpKind::Get => Action::Get { observed: self.observed },
            OpKind::Del => Action::Del { found: self.found },
        };
        Operation { action, call: self.call_us, ret: self.return_us }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = |micros: u64| micros as f64 / 1000.0;
        let what = match self.op {
            OpKind::Put => format!("put {} = {}", self.key, self.value.unwrap_or_default()),
            OpKind::Get => match self.observed {
                Some(value) => format!("get {} -> {value}", self.key),
                None => format!("get {} -> absent", self.key),
            },
            OpKind::Del => match self.found {
                Some(found) => format!("del {} -> {}", self.key, if found { "found" } else { "absent" }),
                None => format!("del {}", self.key),
            },
        };
        match self.return_us {
            Some(ret) => {
                write!(
                    f,
                    "client {:>3}: {what:<40} [{:>10.3} ms .. {:>10.3} ms]",
                    self.client,
                    millis(self.call_us),
                    millis(ret)
                )
            }
            None => write!(
                f,
                "client {:>3}: {what:<40} [{:>10.3} ms .. unknown outcome]",
                self.client,
                millis(self.call_us)
            ),
        }
    }
}

/// A fault the nemesis injected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub start_us: u64,
    /// When it was healed; `None` for instantaneous faults (kill -9).
    pub end_us: Option<u64>,
    pub description: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = self.start_us as f64 / 1000.0;
        match self.end_us {
            Some(end) => {
                write!(f, "[{start:>10.3} ms .. {:>10.3} ms] {}", end as f64 / 1000.0, self.description)
            }
            None => write!(f, "[{start:>10.3} ms] {}", self.description),
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The seed of the workload and fault schedule.
    pub seed: u64,
    pub records: Vec<Record>,
    pub faults: Vec<Fault>,
}

/// Microseconds since a run's start.
#[derive(Clone, Copy)]
pub struct Clock {
    started: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { started: Instant::now() }
    }

    pub fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let history = History {
            seed: 42,
            records: vec![
                Record {
                    client: 1,
                    key: "k1".into(),
                    op: OpKind::Put,
                    value: Some(7),
                    observed: None,
                    found: None,
                    call_us: 10,
                    return_us: Some(20),
                },
                Record {
                    client: 2,
                    key: "k1".into(),
                    op: OpKind::Del,
                    value: None,
                    observed: None,
                    found: None,
                    call_us: 15,
                    return_us: None,
                },
            ],
            faults: vec![Fault { start_us: 5, end_us: Some(9), description: "pause node 1".into() }],
        };
        let text = serde_json::to_string(&history).unwrap();
        assert!(text.contains("\"op\":\"put\""), "{text}");
        assert_eq!(serde_json::from_str::<History>(&text).unwrap(), history);
    }

    #[test]
    fn records_become_operations() {
        let get = Record {
            client: 1,
            key: "k".into(),
            op: OpKind::Get,
            value: None,
            observed: None,
            found: None,
            call_us: 1,
            return_us: Some(2),
        };
        assert_eq!(get.operation().action, Action::Get { observed: None });
        assert!(get.to_string().contains("absent"));
    }
}
