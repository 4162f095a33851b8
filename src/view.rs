//! The chain as ZooKeeper shows it, and where one server stands in it. Pure
//! data and functions: no ZooKeeper calls here, so the rules are unit-tested.
//!
//! Every live server has a child `node<10-digit sequence>` of the chain node
//! with data `host:port ready|joining|recovering:<n> token server:<id>`.
//! Ready servers form the chain, ordered by sequence: the lowest is the
//! head, the highest the tail. A joining server sits after them and its
//! predecessor is the server just before it (the tail, or another joining
//! server).
//!
//! The chain node's own data is the [`CommitRecord`]: which servers hold
//! every committed write, so that a chain whose members all lost their
//! sessions restarts from one of them and from no one else.

use std::fmt;

/// The state a server announces in its ZooKeeper node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// New or reset: waits for a state transfer; serves nothing.
    Joining,
    /// Was a ready member and kept its complete table (up to write
    /// `last_applied`) after losing its session. It joins like a newcomer
    /// when a chain exists; when none does (every member lost its session,
    /// e.g. a long ZooKeeper outage), the one with the longest history
    /// restarts the chain with its data instead of losing everything.
    Recovering { last_applied: u64 },
    /// Holds the chain's history; part of the chain proper.
    Ready,
}

impl Readiness {
    pub fn is_ready(self) -> bool {
        self == Readiness::Ready
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Joining => write!(f, "joining"),
            Readiness::Recovering { last_applied } => write!(f, "recovering:{last_applied}"),
            Readiness::Ready => write!(f, "ready"),
        }
    }
}

/// One server as registered in ZooKeeper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// ZooKeeper child name, e.g. `node0000000007`.
    pub name: String,
    /// The sequence number ZooKeeper appended to the name.
    pub sequence: u64,
    /// `host:port` for clients and peers.
    pub address: String,
    pub readiness: Readiness,
    /// Random token chosen at registration, to recognise our own node after
    /// a create whose reply was lost.
    pub token: String,
    /// The server's id, chosen at process start and kept through fencing
    /// (its node name changes at each registration); 0 when the data names
    /// none (older versions).
    pub server_id: u64,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.address)
    }
}

/// Prefix of every member node's name.
pub const MEMBER_PREFIX: &str = "node";

/// The node data for a member: `host:port state token server:<id>`.
pub fn encode_member_data(address: &str, readiness: Readiness, token: &str, server_id: u64) -> Vec<u8> {
    format!("{address} {readiness} {token} server:{server_id}").into_bytes()
}

/// Parses a child name and its data; `None` for anything that is not a
/// well-formed member (other tools' nodes are ignored, not fatal).
pub fn parse_member(name: &str, data: &[u8]) -> Option<Member> {
    let sequence = name.strip_prefix(MEMBER_PREFIX)?.parse().ok()?;
    let text = std::str::from_utf8(data).ok()?;
    let mut words = text.split_whitespace();
    let address = words.next()?.to_owned();
    let readiness = match words.next() {
        // A bare address (as the original project wrote) counts as ready.
        None | Some("ready") => Readiness::Ready,
        Some("joining") => Readiness::Joining,
        Some(state) => {
            let last_applied = state.strip_prefix("recovering:")?.parse().ok()?;
            Readiness::Recovering { last_applied }
        }
    };
    let token = words.next().unwrap_or_default().to_owned();
    let server_id = match words.next() {
        None => 0,
        Some(word) => word.strip_prefix("server:")?.parse().ok()?,
    };
    Some(Member { name: name.to_owned(), sequence, address, readiness, token, server_id })
}

/// What the server that commits writes last wrote into the chain node: the
/// view epoch it commits in, and the servers that were ready members in
/// that view. Every one of them holds every write committed since: a server
/// commits writes of its own only in the epoch recorded (a member leaving
/// changes the epoch, so the record is written again without it first), and
/// a server that becomes ready has every committed write by the hand-over.
///
/// It also keeps the chain's history visible across a total loss: the
/// chain's `generation` (1 for a chain's first start, raised whenever the
/// chain restarts without a member holding every committed write) and the
/// highest write `committed` in it, written by the tail at a bounded rate.
/// So a restart that loses writes can say how many, and clients can see
/// that the generation changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitRecord {
    pub epoch: u64,
    /// Server ids, sorted.
    pub servers: Vec<u64>,
    /// The chain's generation; 0 in a record written before generations.
    pub generation: u64,
    /// A lower bound on the highest write committed in this generation (the
    /// tail updates it at most every `RECORD_PROGRESS_INTERVAL_MS`).
    pub committed: u64,
}

impl CommitRecord {
    /// The chain node's data:
    /// `commit-epoch <n> servers <id>,<id>,... generation <g> committed <n>`.
    pub fn encode(&self) -> Vec<u8> {
        let servers: Vec<String> = self.servers.iter().map(u64::to_string).collect();
        format!(
            "commit-epoch {} servers {} generation {} committed {}",
            self.epoch,
            servers.join(","),
            self.generation,
            self.committed
        )
        .into_bytes()
    }

    /// Parses the chain node's data; anything else (empty, as a new chain
    /// node is, or another tool's data) is no record. A record of an older
    /// version, without generation and committed, reads them as 0.
    pub fn parse(data: &[u8]) -> CommitRecord {
        let parsed = || -> Option<CommitRecord> {
            let text = std::str::from_utf8(data).ok()?;
            let mut words = text.split_whitespace();
            (words.next()? == "commit-epoch").then_some(())?;
            let epoch = words.next()?.parse().ok()?;
            (words.next()? == "servers").then_some(())?;
            let mut next = words.next();
            let servers = match next {
                Some(list) if list != "generation" => {
                    next = words.next();
                    list.split(',').map(|id| id.parse().ok()).collect::<Option<Vec<u64>>>()?
                }
                _ => Vec::new(),
            };
            let (generation, committed) = match next {
                None => (0, 0),
                Some("generation") => {
                    let generation = words.next()?.parse().ok()?;
                    (words.next()? == "committed").then_some(())?;
                    (generation, words.next()?.parse().ok()?)
                }
                Some(_) => return None,
            };
            Some(CommitRecord { epoch, servers, generation, committed })
        };
        parsed().unwrap_or_default()
    }

    pub fn includes(&self, server_id: u64) -> bool {
        server_id != 0 && self.servers.contains(&server_id)
    }

    /// Whether this record may replace `current` in the chain node (the
    /// compare-and-set rule of every writer): not for an older view epoch,
    /// and never to an older generation, so a generation never goes back.
    pub fn may_replace(&self, current: &CommitRecord) -> bool {
        self.epoch >= current.epoch && self.generation >= current.generation
    }
}

/// A consistent reading of the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainView {
    /// Every member, sorted by sequence.
    pub members: Vec<Member>,
    /// ZooKeeper's child version of the chain node when this was read;
    /// larger means newer.
    pub epoch: u64,
    /// The chain node's data when this was read.
    pub record: CommitRecord,
}

impl ChainView {
    pub fn new(mut members: Vec<Member>, epoch: u64) -> ChainView {
        members.sort_by_key(|member| member.sequence);
        ChainView { members, epoch, record: CommitRecord::default() }
    }

    /// The same view with the chain node's record.
    pub fn with_record(self, record: CommitRecord) -> ChainView {
        ChainView { record, ..self }
    }

    /// The ready members in chain order.
    pub fn ready(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|member| member.readiness.is_ready())
    }

    pub fn head(&self) -> Option<&Member> {
        self.ready().next()
    }

    pub fn tail(&self) -> Option<&Member> {
        self.ready().last()
    }

    /// The members in replication order: ready ones, then joining ones.
    pub fn replication_order(&self) -> Vec<&Member> {
        let joining = self.members.iter().filter(|member| !member.readiness.is_ready());
        self.ready().chain(joining).collect()
    }

    /// Where the member called `name` stands; `None` if it is not in the view.
    pub fn position_of(&self, name: &str) -> Option<Position> {
        let order = self.replication_order();
        let index = order.iter().position(|member| member.name == name)?;
        let me = order[index].clone();
        let ready_count = self.ready().count();
        Some(Position {
            predecessor: index.checked_sub(1).map(|before| order[before].clone()),
            successor: order.get(index + 1).map(|&after| after.clone()),
            is_head: index == 0 && me.readiness.is_ready(),
            is_tail: me.readiness.is_ready() && index + 1 == ready_count,
            index,
            chain_length: ready_count,
            me,
        })
    }
}

/// One server's place in a [`ChainView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub me: Member,
    /// Who may send us writes.
    pub predecessor: Option<Member>,
    /// Whom we forward writes to.
    pub successor: Option<Member>,
    /// First ready member: assigns sequence numbers to client writes.
    pub is_head: bool,
    /// Last ready member: commits writes and answers reads (until it hands
    /// over to a joining successor).
    pub is_tail: bool,
    /// 0-based index in replication order.
    pub index: usize,
    /// Ready members in the chain.
    pub chain_length: usize,
}

/// A member `node<sequence>` at `127.0.0.1:<7000 + sequence>`, for tests.
#[cfg(test)]
pub fn test_member(sequence: u64, readiness: Readiness) -> Member {
    Member {
        name: format!("node{sequence:010}"),
        sequence,
        address: format!("127.0.0.1:{}", 7000 + sequence),
        readiness,
        token: format!("t{sequence}"),
        server_id: 100 + sequence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_member as member;

    #[test]
    fn member_data_round_trip() {
        let data = encode_member_data("10.0.0.1:7000", Readiness::Joining, "abc", 99);
        let parsed = parse_member("node0000000042", &data).unwrap();
        assert_eq!(parsed.server_id, 99);
        assert!(parse_member("node0000000042", b"h:1 ready t other").is_none());
        assert_eq!(parse_member("node0000000042", b"h:1 ready t").unwrap().server_id, 0);
        assert_eq!(parsed.sequence, 42);
        assert_eq!(parsed.address, "10.0.0.1:7000");
        assert_eq!(parsed.readiness, Readiness::Joining);
        assert_eq!(parsed.token, "abc");
        // The original project's bare address is a ready member.
        assert_eq!(parse_member("node0000000001", b"h:1").unwrap().readiness, Readiness::Ready);
        assert!(parse_member("lock-1", b"h:1").is_none());
        assert!(parse_member("node0000000001", b"").is_none());
        assert!(parse_member("node0000000001", b"h:1 sleeping").is_none());
        assert!(parse_member("node0000000001", &[0xff]).is_none());
        let recovering = encode_member_data("h:1", Readiness::Recovering { last_applied: 77 }, "t", 1);
        assert_eq!(
            parse_member("node0000000003", &recovering).unwrap().readiness,
            Readiness::Recovering { last_applied: 77 }
        );
        assert!(parse_member("node0000000001", b"h:1 recovering:x").is_none());
    }

    #[test]
    fn commit_record_round_trip() {
        let record = CommitRecord { epoch: 12, servers: vec![3, 17], generation: 2, committed: 40 };
        assert_eq!(CommitRecord::parse(&record.encode()), record);
        let nobody = CommitRecord { servers: vec![], ..record.clone() };
        assert_eq!(CommitRecord::parse(&nobody.encode()), nobody);
        assert_eq!(
            CommitRecord::parse(b"commit-epoch 3 servers 1,2"),
            CommitRecord { epoch: 3, servers: vec![1, 2], generation: 0, committed: 0 },
            "a record from before generations"
        );
        assert_eq!(
            CommitRecord::parse(b"commit-epoch 3 servers 1 generation x committed 1"),
            CommitRecord::default()
        );
        assert_eq!(CommitRecord::parse(b""), CommitRecord::default(), "a new chain node");
        assert_eq!(
            CommitRecord::parse(b"commit-epoch 3 servers "),
            CommitRecord { epoch: 3, ..CommitRecord::default() }
        );
        assert_eq!(CommitRecord::parse(b"commit-epoch x servers 1"), CommitRecord::default());
        assert_eq!(CommitRecord::parse(&[0xff, 0xfe]), CommitRecord::default());
        assert!(record.includes(17) && !record.includes(4) && !record.includes(0));
        let older_generation = CommitRecord { epoch: 13, generation: 1, ..record.clone() };
        assert!(!older_generation.may_replace(&record), "a generation never goes back");
        let older_epoch = CommitRecord { epoch: 11, ..record.clone() };
        assert!(!older_epoch.may_replace(&record));
        assert!(CommitRecord { committed: 41, ..record.clone() }.may_replace(&record));
    }

    #[test]
    fn positions_in_a_ready_chain() {
        let view = ChainView::new(
            vec![member(3, Readiness::Ready), member(1, Readiness::Ready), member(2, Readiness::Ready)],
            5,
        );
        assert_eq!(view.head().unwrap().sequence, 1);
        assert_eq!(view.tail().unwrap().sequence, 3);
        let head = view.position_of("node0000000001").unwrap();
        assert!(head.is_head && !head.is_tail);
        assert_eq!(head.predecessor, None);
        assert_eq!(head.successor.unwrap().sequence, 2);
        let middle = view.position_of("node0000000002").unwrap();
        assert!(!middle.is_head && !middle.is_tail);
        let tail = view.position_of("node0000000003").unwrap();
        assert!(tail.is_tail && tail.successor.is_none());
        assert_eq!(tail.chain_length, 3);
        assert!(view.position_of("node0000000009").is_none());
    }

    #[test]
    fn joining_members_follow_the_tail() {
        // A joiner with a lower sequence than a ready member (it registered
        // before the other became ready again is impossible, but a rejoin
        // after fencing gets a new, higher sequence; still, order by state).
        let view = ChainView::new(
            vec![member(1, Readiness::Ready), member(2, Readiness::Joining), member(3, Readiness::Ready)],
            1,
        );
        let order: Vec<u64> = view.replication_order().iter().map(|member| member.sequence).collect();
        assert_eq!(order, vec![1, 3, 2]);
        let tail = view.position_of("node0000000003").unwrap();
        assert!(tail.is_tail);
        assert_eq!(tail.successor.as_ref().unwrap().sequence, 2);
        let joiner = view.position_of("node0000000002").unwrap();
        assert!(!joiner.is_head && !joiner.is_tail);
        assert_eq!(joiner.predecessor.unwrap().sequence, 3);
    }

    #[test]
    fn only_joining_members_means_no_chain() {
        let view = ChainView::new(vec![member(4, Readiness::Joining)], 1);
        assert!(view.head().is_none());
        let joiner = view.position_of("node0000000004").unwrap();
        assert!(!joiner.is_head && !joiner.is_tail && joiner.predecessor.is_none());
    }

    #[test]
    fn single_ready_member_is_head_and_tail() {
        let view = ChainView::new(vec![member(1, Readiness::Ready)], 1);
        let only = view.position_of("node0000000001").unwrap();
        assert!(only.is_head && only.is_tail);
    }
}
