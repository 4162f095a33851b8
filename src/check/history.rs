//! What the clients of a `table-check` run did and saw, and what the
//! nemesis did: recorded during the run, saved as JSON, checked afterwards
//! (also offline, from the file).

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::linearizability::{Action, CasResult, Operation};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Put,
    Get,
    Del,
    /// Compare-and-set: `expected` (absent: the key must be absent) to `value`.
    Cas,
    /// Add `value` (the delta) to the number at the key.
    Incr,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Which client thread issued it.
    pub client: u64,
    pub key: String,
    pub op: OpKind,
    /// Put, Cas: the value written, unique in the run. Incr: the delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// Get: the value read; `None` means the key was absent. Cas that did
    /// not swap: the value it saw. Incr: the new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<u64>,
    /// Cas: the value expected; `None`: the key must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// Cas: whether it swapped (`None` while the outcome is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapped: Option<bool>,
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
    /// An operation just called, its outcome not known yet.
    pub fn called(client: u64, key: String, op: OpKind, call_us: u64) -> Record {
        Record {
            client,
            key,
            op,
            value: None,
            observed: None,
            expected: None,
            swapped: None,
            found: None,
            call_us,
            return_us: None,
        }
    }

    /// The checker's view of this record.
    pub fn operation(&self) -> Operation {
        let known = self.return_us.is_some();
        let action = match self.op {
            OpKind::Put => Action::Put { value: self.value.unwrap_or(u64::MAX) },
            OpKind::Get => Action::Get { observed: self.observed },
            OpKind::Del => Action::Del { found: self.found },
            OpKind::Cas => Action::Cas {
                expected: self.expected,
                value: self.value.unwrap_or(u64::MAX),
                result: match self.swapped.filter(|_| known) {
                    None => None,
                    Some(true) => Some(CasResult::Swapped),
                    Some(false) => Some(CasResult::Saw(self.observed)),
                },
            },
            OpKind::Incr => Action::Incr {
                delta: self.value.unwrap_or_default(),
                result: self.observed.filter(|_| known),
            },
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
            OpKind::Cas => {
                let expected = self.expected.map_or("absent".to_owned(), |value| value.to_string());
                let result = match (self.swapped, self.observed) {
                    (Some(true), _) => " -> swapped".to_owned(),
                    (Some(false), Some(seen)) => format!(" -> saw {seen}"),
                    (Some(false), None) => " -> saw absent".to_owned(),
                    (None, _) => String::new(),
                };
                format!("cas {} {expected} -> {}{result}", self.key, self.value.unwrap_or_default())
            }
            OpKind::Incr => match self.observed {
                Some(number) => format!("incr {} {} -> {number}", self.key, self.value.unwrap_or_default()),
                None => format!("incr {} {}", self.key, self.value.unwrap_or_default()),
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
                    value: Some(7),
                    return_us: Some(20),
                    ..Record::called(1, "k1".into(), OpKind::Put, 10)
                },
                Record::called(2, "k1".into(), OpKind::Del, 15),
                Record {
                    value: Some(8),
                    swapped: Some(false),
                    observed: Some(7),
                    return_us: Some(30),
                    ..Record::called(2, "k1".into(), OpKind::Cas, 25)
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
        let get = Record { return_us: Some(2), ..Record::called(1, "k".into(), OpKind::Get, 1) };
        assert_eq!(get.operation().action, Action::Get { observed: None });
        assert!(get.to_string().contains("absent"));
        let cas = Record {
            value: Some(9),
            swapped: Some(false),
            return_us: Some(3),
            ..Record::called(1, "k".into(), OpKind::Cas, 1)
        };
        let saw_absent = Action::Cas { expected: None, value: 9, result: Some(CasResult::Saw(None)) };
        assert_eq!(cas.operation().action, saw_absent);
        assert!(cas.to_string().contains("cas k absent -> 9 -> saw absent"), "{cas}");
        let incr =
            Record { value: Some(2), observed: Some(5), ..Record::called(1, "k".into(), OpKind::Incr, 1) };
        assert_eq!(incr.operation().action, Action::Incr { delta: 2, result: None }, "outcome unknown");
    }
}
