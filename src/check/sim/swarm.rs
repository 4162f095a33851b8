//! The nemesis, by swarm testing (Groce et al., "Swarm Testing", ISSTA
//! 2012): each seed draws its own mix of faults and rates, so that across
//! seeds some runs have no crashes and many pauses, some only link faults,
//! some many ZooKeeper session expiries, some slow links. One fixed mix
//! spreads every run thin over all faults; schedules that need many of one
//! kind (or none of another, which would end the scenario early) then
//! almost never happen.
//!
//! Beside the random faults, traps aimed at the moments that matter: a
//! session lost during a hand-over, a view change between applying a write
//! and forwarding it, a delayed frame from a link that a newer one
//! replaced, a tail cut off from ZooKeeper just after a view change, a
//! whole-chain restart. Every choice comes from the world's generator, so a
//! seed still replays event for event.

use super::client::Request;
use super::crash::may_crash;
use super::disk::RESTART_MS;
use super::server::{LinkMessage, server_of};
use super::world::{Event, SESSION_TIMEOUT_MS, World};
use crate::chain::WriteOp;
use crate::check::history::Fault;
use crate::check::random::SplitMix64;
use crate::limits::SUSPECT_REMOVAL_AFTER_MS;

/// Most servers a run starts, counting those that join later.
pub(super) const SERVERS_MAX: usize = 9;
/// The chain the aimed faults (hand-overs, isolated heads and tails, view
/// changes) aim at in a run of several chains; crashes, pauses, partitions
/// and joins hit any server.
const AIMED_CHAIN: usize = 0;
/// Least time between two whole-chain restarts (ms): back to back, the
/// clients' operations overlap so far that the linearizability search
/// cannot decide the history.
const RESTART_SPACING_MS: u64 = 8 * SESSION_TIMEOUT_MS;

/// A fault that lasts, and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heal {
    Resume(usize),
    ReconnectZk(usize),
    Unpartition(usize, usize),
    Unslow(usize),
}

/// The kinds of fault, each drawn with the seed's own weight.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Crash,
    Join,
    Pause,
    /// Pause the head between applying its next write and forwarding it.
    PauseAfterWrite,
    ZkCut,
    Partition,
    /// The head loses its successor (connections held) and ZooKeeper.
    IsolateHead,
    /// The tail loses its predecessor (connections held) and ZooKeeper for
    /// a few read leases, while clients still reach it: its predecessor
    /// removes it, and it does not hear of that.
    IsolateTail,
    Slow,
    /// Trap: at the next hand-over, the tail or the joiner loses its session.
    HandOverSessionLoss,
    /// Trap: the next frame on a link is delayed past its replacement.
    ReplacedLink,
    /// Trap: at the next view change, the tail is cut off from ZooKeeper.
    TailCutAfterViewChange,
    /// Every live server loses its session at once (in a durable run, or
    /// crashes and restarts on its disk).
    ChainRestart,
    /// Trap: the next cas expecting an absent key arrives a second time, late.
    LateCopy,
}

const KINDS: [Kind; 14] = [
    Kind::Crash,
    Kind::Join,
    Kind::Pause,
    Kind::PauseAfterWrite,
    Kind::ZkCut,
    Kind::Partition,
    Kind::IsolateHead,
    Kind::IsolateTail,
    Kind::Slow,
    Kind::HandOverSessionLoss,
    Kind::ReplacedLink,
    Kind::TailCutAfterViewChange,
    Kind::ChainRestart,
    Kind::LateCopy,
];

/// An aimed fault waiting for its moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// When a tail sends its hand-over mark: the tail, the joiner, or the
    /// tail with the joiner coming back late, loses its session.
    HandOver(HandOverLoss),
    /// The next snapshot chunk (or any frame) towards a successor is held
    /// back this long, and its link breaks at once: the predecessor opens a
    /// new one, and the frame arrives after the new link's.
    ReplacedLink { delay_ms: u64, chunks_only: bool },
    /// When the view's epoch passes this one: cut the new tail off from
    /// ZooKeeper for longer than a session.
    ViewChange { epoch: u64 },
    /// The next cas expecting an absent key is delivered again this much later, as
    /// an attempt left in a paused server's socket buffer is read when it
    /// resumes, long after its client saw an answer and went on.
    LateCopy { delay_ms: u64 },
}

/// Who loses what in a [`Trap::HandOver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOverLoss {
    /// The tail that handed over loses its session.
    Giver,
    /// The joiner loses its session.
    Joiner,
    /// The tail loses its session, and the joiner is cut off from ZooKeeper
    /// until just after that (so it announces itself ready behind a new
    /// predecessor), which meanwhile cannot reach it: the predecessor
    /// commits writes alone that the joiner lacks.
    GiverWhileJoinerAway,
    /// The tail's predecessor cuts the tail off and removes it, records
    /// its epoch and commits alone; then it loses its session too. The
    /// joiner, cut off from ZooKeeper meanwhile, announces itself ready and
    /// reads no view until the predecessor is gone: first and alone in the
    /// view, it must not become the tail on the departed tail's hand-over.
    PredecessorToo,
}

/// One seed's mix of faults and rates.
#[derive(Debug)]
pub struct Swarm {
    weights: [u64; KINDS.len()],
    /// Gap between two faults (ms).
    gap_ms: (u64, u64),
    /// Longest a lasting fault lasts (ms).
    duration_max_ms: u64,
    /// Share of partitions whose open connections are held (per mille).
    held_per_mille: u64,
    /// Share of watch notifications that are lost (per mille).
    pub lost_watch_per_mille: u64,
    /// Share of messages that are late (per mille); a tenth of them very.
    pub late_per_mille: u64,
    /// A slow link's delay (ms).
    pub slow_ms: (u64, u64),
    /// When the chain may be restarted again (ms).
    restart_due_ms: u64,
}

impl Swarm {
    /// Draws a seed's mix: each kind of fault is left out with a third's
    /// chance, else weighted 1 to 8 (at least one kind stays in).
    pub fn draw(rng: &mut SplitMix64) -> Swarm {
        let mut weights = [0; KINDS.len()];
        for weight in &mut weights {
            *weight = if rng.below(3) == 0 { 0 } else { rng.between(1, 8) };
        }
        if weights.iter().all(|&weight| weight == 0) {
            weights[rng.below(KINDS.len() as u64) as usize] = 1;
        }
        let gap_low = rng.between(50, 400);
        let slow_low = rng.between(20, 100);
        Swarm {
            weights,
            gap_ms: (gap_low, gap_low + rng.between(300, 2500)),
            duration_max_ms: rng.between(SESSION_TIMEOUT_MS / 2, 4 * SESSION_TIMEOUT_MS),
            held_per_mille: rng.below(1001),
            lost_watch_per_mille: rng.below(150),
            late_per_mille: rng.between(10, 300),
            slow_ms: (slow_low, slow_low + rng.between(50, 800)),
            restart_due_ms: 0,
        }
    }

    fn kind(&self, rng: &mut SplitMix64) -> Kind {
        let total: u64 = self.weights.iter().sum();
        let mut drawn = rng.below(total);
        for (kind, &weight) in KINDS.iter().zip(&self.weights) {
            if drawn < weight {
                return *kind;
            }
            drawn -= weight;
        }
        unreachable!("drawn below the total weight")
    }
}

impl World {
    /// The nemesis's next fault, from this seed's mix.
    pub(super) fn nemesis(&mut self) {
        if self.quiet_since_ms.is_some() {
            return;
        }
        let live: Vec<usize> = (0..self.servers.len()).filter(|&server| self.servers[server].alive).collect();
        let duration = self.rng.between(100, self.swarm.duration_max_ms);
        let pick = |world: &mut World, from: &[usize]| from[world.rng.below(from.len() as u64) as usize];
        let kind = self.swarm.kind(&mut self.rng);
        match kind {
            // Every server crashed at once (durable): nothing to do until
            // they are back.
            _ if live.is_empty() => {}
            // Crash: only while another live server holds every committed
            // write (see crash.rs).
            Kind::Crash => {
                let server = pick(self, &live);
                let durable = self.servers[server].disk.is_some();
                let record = self.zk.view(self.servers[server].chain).record;
                if may_crash(&record, &live, server, durable) {
                    self.crash(server);
                }
            }
            Kind::Join if self.servers.len() < SERVERS_MAX * self.config.chains.max(1) => {
                let chain = match self.config.chains {
                    0 | 1 => 0,
                    chains => self.rng.below(chains as u64) as usize,
                };
                let server = self.start_server(chain);
                self.fault(format!("start s{server} (joins the chain)"), None);
            }
            Kind::Join => {}
            // Stop the head right after the next write it applies, before
            // it is forwarded (SIGSTOP between the two), for just over a
            // session timeout: it resumes as its successor takes over, with
            // a write the chain never saw.
            Kind::PauseAfterWrite => {
                let head = self.zk.view(AIMED_CHAIN).head().and_then(|member| server_of(&member.address));
                let server = head.filter(|server| live.contains(server)).unwrap_or_else(|| pick(self, &live));
                let duration = SESSION_TIMEOUT_MS + self.rng.between(0, 300);
                self.servers[server].pause_after_write = Some(duration);
                self.fault(format!("pause s{server} after its next write"), None);
            }
            Kind::Pause => {
                let server = pick(self, &live);
                self.pause(server, duration);
            }
            Kind::ZkCut => {
                let server = pick(self, &live);
                self.cut_from_zk(server, duration);
            }
            Kind::Partition => self.partition(&live, duration),
            Kind::IsolateHead => self.isolate_head(&live),
            Kind::IsolateTail => self.isolate_tail(&live),
            Kind::Slow => {
                let server = pick(self, &live);
                self.slow.insert(server);
                self.fault(format!("slow network at s{server}"), Some((duration, Heal::Unslow(server))));
            }
            Kind::HandOverSessionLoss => {
                let loss = match self.rng.below(5) {
                    0 => HandOverLoss::Giver,
                    1 => HandOverLoss::Joiner,
                    2 => HandOverLoss::PredecessorToo,
                    _ => HandOverLoss::GiverWhileJoinerAway,
                };
                self.arm(Trap::HandOver(loss));
            }
            Kind::ReplacedLink => {
                let delay_ms = self.rng.between(100, 2 * SESSION_TIMEOUT_MS);
                let chunks_only = self.rng.below(2) == 0;
                self.arm(Trap::ReplacedLink { delay_ms, chunks_only });
            }
            Kind::TailCutAfterViewChange => {
                self.arm(Trap::ViewChange { epoch: self.zk.view(AIMED_CHAIN).epoch })
            }
            Kind::ChainRestart => self.chain_restart(&live),
            Kind::LateCopy => {
                let delay_ms = self.rng.between(100, 2 * SESSION_TIMEOUT_MS);
                self.arm(Trap::LateCopy { delay_ms });
            }
        }
        let (low, high) = self.swarm.gap_ms;
        let next = self.rng.between(low, high);
        self.schedule(next, Event::Nemesis);
    }

    pub(super) fn pause(&mut self, server: usize, duration: u64) {
        self.servers[server].paused_until_ms = Some(self.now_ms + duration);
        self.fault(format!("pause s{server}"), Some((duration, Heal::Resume(server))));
    }

    pub(super) fn cut_from_zk(&mut self, server: usize, duration: u64) {
        if self.quiet_since_ms.is_none() && self.zk_cut.insert(server) {
            self.fault(
                format!("cut s{server} off from ZooKeeper"),
                Some((duration, Heal::ReconnectZk(server))),
            );
        }
    }

    fn partition(&mut self, live: &[usize], duration: u64) {
        if live.len() < 2 {
            return;
        }
        let a = live[self.rng.below(live.len() as u64) as usize];
        let b = live[self.rng.below(live.len() as u64) as usize];
        if a == b {
            return;
        }
        let pair = (a.min(b), a.max(b));
        self.partitions.insert(pair);
        let held = self.rng.below(1000) < self.swarm.held_per_mille;
        if held {
            self.held.insert(pair, self.now_ms + duration);
        } else {
            self.break_connections(a, Some(b));
        }
        let kind = if held { " (open connections held)" } else { "" };
        self.fault(format!("partition s{a} from s{b}{kind}"), Some((duration, Heal::Unpartition(a, b))));
    }

    /// The head loses the network to its successor (connections held) and
    /// to ZooKeeper: it takes writes until its lease runs out, the chain
    /// replaces it, and when the network returns its held frames reach a
    /// successor that is the head of a new history.
    fn isolate_head(&mut self, live: &[usize]) {
        let view = self.zk.view(AIMED_CHAIN);
        let ready: Vec<usize> = view.ready().filter_map(|member| server_of(&member.address)).collect();
        let [head, successor, ..] = ready[..] else { return };
        if !live.contains(&head) || !live.contains(&successor) {
            return;
        }
        // Healing as the chain replaces the head.
        let duration = self.rng.between(SESSION_TIMEOUT_MS, SESSION_TIMEOUT_MS * 8 / 5);
        let pair = (head.min(successor), head.max(successor));
        self.partitions.insert(pair);
        self.held.insert(pair, self.now_ms + duration);
        let heal = Heal::Unpartition(head, successor);
        self.fault(format!("isolate head s{head} from s{successor} (held)"), Some((duration, heal)));
        self.cut_from_zk(head, duration);
    }

    /// The tail loses the network to its predecessor (connections held)
    /// and to ZooKeeper, for one to four times the wait before a silent
    /// successor may be removed: its predecessor removes it, the tail does
    /// not hear of it, and whether it still answers reads is up to its read
    /// lease (see `chain::lease`).
    fn isolate_tail(&mut self, live: &[usize]) {
        let view = self.zk.view(AIMED_CHAIN);
        let ready: Vec<usize> = view.ready().filter_map(|member| server_of(&member.address)).collect();
        let [.., predecessor, tail] = ready[..] else { return };
        if !live.contains(&predecessor) || !live.contains(&tail) {
            return;
        }
        let duration = self.rng.between(SUSPECT_REMOVAL_AFTER_MS, 4 * SUSPECT_REMOVAL_AFTER_MS);
        let pair = (predecessor.min(tail), predecessor.max(tail));
        self.partitions.insert(pair);
        self.held.insert(pair, self.now_ms + duration);
        let heal = Heal::Unpartition(predecessor, tail);
        self.fault(format!("isolate tail s{tail} from s{predecessor} (held)"), Some((duration, heal)));
        self.cut_from_zk(tail, duration);
    }

    /// Every live server loses its session (cut off from ZooKeeper, or
    /// paused, for longer than a session), coming back at different times:
    /// the chain restarts from the member the commit record names.
    fn chain_restart(&mut self, live: &[usize]) {
        if self.now_ms < self.swarm.restart_due_ms {
            return;
        }
        self.swarm.restart_due_ms = self.now_ms + RESTART_SPACING_MS;
        let paused = self.rng.below(2) == 0;
        if self.config.durable && self.rng.below(2) == 0 {
            // Durable: every member crashes at once (power lost) and
            // comes back on its disk.
            for &server in live {
                self.crash(server);
            }
            return;
        }
        for &server in live {
            let duration = SESSION_TIMEOUT_MS + self.rng.between(50, SESSION_TIMEOUT_MS * 3 / 2);
            if paused {
                self.pause(server, duration);
            } else {
                self.cut_from_zk(server, duration);
            }
        }
    }

    fn arm(&mut self, trap: Trap) {
        self.trace(|| format!("TRAP armed: {trap:?}"));
        self.trap = Some(trap);
    }

    /// Springs a trap aimed at `message`, about to be sent on `connection`:
    /// the extra delay it gets, and whether the link breaks after it.
    pub(super) fn trap_on_send(
        &mut self,
        connection: usize,
        to_successor: bool,
        message: &LinkMessage,
    ) -> (u64, bool) {
        let (predecessor, successor) = (self.end(connection, false), self.end(connection, true));
        match (self.trap, message) {
            (Some(Trap::HandOver(loss)), LinkMessage::Frame(frame))
                if to_successor && frame.promote_at.is_some() =>
            {
                self.trap = None;
                self.hand_over_loss(loss, predecessor, successor);
                (0, false)
            }
            (Some(Trap::ReplacedLink { delay_ms, chunks_only }), LinkMessage::Frame(frame))
                if to_successor && (!chunks_only || frame.snapshot.is_some()) =>
            {
                self.trap = None;
                self.fault(
                    format!("delay a frame s{predecessor} -> s{successor} by {delay_ms} ms, break its link"),
                    None,
                );
                (delay_ms, true)
            }
            _ => (0, false),
        }
    }

    /// Springs a late-copy trap aimed at `request`, about to be sent to
    /// `server`: how much later its copy arrives.
    pub(super) fn trap_on_request(&mut self, server: usize, request: &Request) -> Option<u64> {
        let (Some(Trap::LateCopy { delay_ms }), Request::Write { op, .. }) = (self.trap, request) else {
            return None;
        };
        // A cas expecting the key absent is often declined, and its copy
        // can swap once a delete makes the key absent again (values are
        // unique in a run, so a cas expecting a value never matches again).
        if !matches!(op, WriteOp::Cas { expected: None, .. }) {
            return None;
        }
        self.trap = None;
        self.fault(format!("deliver a copy of the next request to s{server} {delay_ms} ms late"), None);
        Some(delay_ms)
    }

    /// A session lost during the hand-over from `giver` to `joiner`.
    fn hand_over_loss(&mut self, loss: HandOverLoss, giver: usize, joiner: usize) {
        let session_lost = SESSION_TIMEOUT_MS + self.rng.between(50, SESSION_TIMEOUT_MS);
        match loss {
            HandOverLoss::Giver => self.cut_from_zk(giver, session_lost),
            HandOverLoss::Joiner => self.cut_from_zk(joiner, session_lost),
            HandOverLoss::GiverWhileJoinerAway => {
                self.cut_from_zk(giver, session_lost);
                let away = self.rng.between(SESSION_TIMEOUT_MS * 4 / 5, SESSION_TIMEOUT_MS);
                self.cut_from_zk(joiner, away);
                if let Some(predecessor) = self.predecessor_of(giver)
                    && predecessor != joiner
                {
                    let pair = (predecessor.min(joiner), predecessor.max(joiner));
                    self.partitions.insert(pair);
                    self.break_connections(predecessor, Some(joiner));
                    let apart = away + self.rng.between(0, SESSION_TIMEOUT_MS);
                    let heal = Heal::Unpartition(predecessor, joiner);
                    self.fault(format!("partition s{predecessor} from s{joiner}"), Some((apart, heal)));
                }
            }
            HandOverLoss::PredecessorToo => {
                let Some(predecessor) = self.predecessor_of(giver).filter(|&server| server != joiner) else {
                    return;
                };
                let pair = (predecessor.min(giver), predecessor.max(giver));
                self.partitions.insert(pair);
                self.break_connections(predecessor, Some(giver));
                let heal = Heal::Unpartition(predecessor, giver);
                self.fault(
                    format!("partition s{predecessor} from s{giver}"),
                    Some((3 * SESSION_TIMEOUT_MS, heal)),
                );
                let away = self.rng.between(SESSION_TIMEOUT_MS * 4 / 5, SESSION_TIMEOUT_MS * 19 / 20);
                self.cut_from_zk(joiner, away);
                let strike_ms = self.rng.between(200, 400);
                self.schedule(strike_ms, Event::CutFromZk { server: predecessor, duration: session_lost });
                let until = self.now_ms + strike_ms + SESSION_TIMEOUT_MS + self.rng.between(100, 300);
                self.views_stalled_until.insert(joiner, until);
                self.fault(format!("s{joiner} reads no view for {} ms", until - self.now_ms), None);
            }
        }
    }

    /// The member before `server` in ZooKeeper's view of the aimed chain.
    fn predecessor_of(&self, server: usize) -> Option<usize> {
        let view = self.zk.view(AIMED_CHAIN);
        let at = view.members.iter().position(|member| server_of(&member.address) == Some(server))?;
        server_of(&view.members[at.checked_sub(1)?].address)
    }

    /// Springs a view-change trap once ZooKeeper's view moved on.
    pub(super) fn trap_on_view_change(&mut self) {
        let Some(Trap::ViewChange { epoch }) = self.trap else { return };
        let view = self.zk.view(AIMED_CHAIN);
        if view.epoch <= epoch {
            return;
        }
        self.trap = None;
        if let Some(tail) = view.tail().and_then(|member| server_of(&member.address)) {
            let duration = SESSION_TIMEOUT_MS + self.rng.between(0, SESSION_TIMEOUT_MS);
            self.cut_from_zk(tail, duration);
        }
    }

    /// Records a fault, and schedules its end if it lasts.
    pub(super) fn fault(&mut self, description: String, lasts: Option<(u64, Heal)>) {
        self.trace(|| format!("FAULT {description}"));
        let start_us = self.now_ms * 1000;
        let index = self.history.faults.len();
        self.history.faults.push(Fault { start_us, end_us: None, description });
        if let Some((duration, heal)) = lasts {
            let id = self.next_fault;
            self.next_fault += 1;
            self.open_faults.insert(id, (index, heal));
            self.schedule(duration, Event::Heal(heal));
        }
    }

    pub(super) fn crash(&mut self, server: usize) {
        self.fault(format!("crash s{server}"), None);
        self.servers[server].alive = false;
        self.servers[server].paused_until_ms = None;
        self.break_connections(server, None);
        if self.servers[server].disk.is_some() {
            let delay = self.rng.between(RESTART_MS.0, RESTART_MS.1);
            self.schedule(delay, Event::Restart(server));
        }
    }

    pub(super) fn heal(&mut self, heal: Heal) {
        let Some((&id, &(index, _))) = self.open_faults.iter().find(|(_, (_, open))| *open == heal) else {
            return;
        };
        self.open_faults.remove(&id);
        self.history.faults[index].end_us = Some(self.now_ms * 1000);
        self.trace(|| format!("HEAL {heal:?}"));
        match heal {
            Heal::Resume(server) => self.servers[server].paused_until_ms = None,
            Heal::ReconnectZk(server) => {
                self.zk_cut.remove(&server);
            }
            Heal::Unpartition(a, b) => {
                self.partitions.remove(&(a.min(b), a.max(b)));
                self.held.remove(&(a.min(b), a.max(b)));
            }
            Heal::Unslow(server) => {
                self.slow.remove(&server);
            }
        }
    }

    /// The last client operation ended: heal everything, let the chain
    /// settle.
    pub fn go_quiet(&mut self) {
        if self.quiet_since_ms.is_some() {
            return;
        }
        self.quiet_since_ms = Some(self.now_ms);
        self.trap = None;
        self.views_stalled_until.clear();
        let open: Vec<Heal> = self.open_faults.values().map(|(_, heal)| *heal).collect();
        for heal in open {
            self.heal(heal);
        }
    }
}
