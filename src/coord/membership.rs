//! ZooKeeper membership: register this server in the chain, keep the
//! replica's view of the chain current, hold a lease on the session, and
//! fence the replica the moment the session is lost or cannot be confirmed.
//!
//! Known traps of the `zookeeper` crate (0.8) handled here: watches can be
//! lost after a reconnection and a session can expire while the client looks
//! healthy (it silently opens a new one). So the view is re-read after every
//! (re)connection and on a timer, and the session is confirmed on a timer by
//! reading our own ephemeral node and checking its owner.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};
use log::{debug, error, info, warn};
use zookeeper::{AddWatchMode, CreateMode, KeeperState, WatchedEvent, ZkError, ZkState};

use crate::chain::bootstrap::{Bootstrap, Holding};
use crate::chain::eviction::Evidence;
use crate::chain::registration::{Duty, Registration, SessionTiming, ViewVerdict};
use crate::coord::acl::{self, ZkIdentity};
use crate::coord::zk::{self, BoundedZk};
use crate::limits::{
    LEASE_CHECK_SHARE, LEASE_SHARE, LOG_REPEAT_INTERVAL, MEMBERSHIP_EVENTS_QUEUED_MAX,
    MEMBERSHIP_RETRY_PAUSE, RESTART_FALLBACK_TIMEOUTS, VIEW_READ_INTERVAL_MIN, ZK_RECONNECT_PAUSE_MAX,
};
use crate::throttle::{Every, suppressed_note};

/// While ZooKeeper is unreachable, failed attempts to open a session are
/// logged at most once a second (with a count).
static RETRY_WARNINGS: Every = Every::new(LOG_REPEAT_INTERVAL);
/// Likewise for calls that fail while the crate reconnects.
static CALL_WARNINGS: Every = Every::new(LOG_REPEAT_INTERVAL);
use crate::view::{ChainView, CommitRecord, MEMBER_PREFIX, Readiness, encode_member_data};

/// How a server takes part in a chain.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// ZooKeeper ensemble, `host:port,host:port`.
    pub zk_hosts: String,
    /// The chain's node in ZooKeeper (several chains can share an ensemble).
    pub chain_path: String,
    /// The shard map's node (`--shards`): which slots this chain answers,
    /// once it exists (see `server::slot_check`).
    pub shards_path: String,
    /// `host:port` that clients and peers use to reach us.
    pub advertise: String,
    /// ZooKeeper session timeout; also bounds how long we serve without
    /// confirming the session.
    pub session_timeout: Duration,
    /// Exit on session expiry instead of rejoining as a new empty server.
    pub exit_on_expiry: bool,
    /// The digest identity members write with: the chain node and member
    /// nodes are then changeable by it only (see [`acl`]). `None` (no peer
    /// secret, loopback-only mode): open to all.
    pub zk_identity: Option<ZkIdentity>,
}

/// What membership needs of the server it keeps in the chain (the
/// server's `Replica`). Coordination sits below the server, so it names
/// the calls it makes rather than the server's type.
pub trait Member {
    /// Our id in member data and commit records.
    fn server_id(&self) -> u64;
    /// What to register as in a new session; forgets the table unless it
    /// can restart a chain.
    fn registration(&self) -> Readiness;
    /// A new view of the chain; `me` is our node's name.
    fn set_view(&self, view: &ChainView, me: &str);
    /// The session is confirmed alive until `until`.
    fn renew_lease(&self, until: Instant);
    /// Stop serving at once: the session is gone or unconfirmed.
    fn fence(&self, reason: &str);
    /// What the table holds, for the bootstrap decision.
    fn holding(&self) -> Holding;
    /// We are about to announce ourselves ready as the first member of a
    /// chain of this generation.
    fn starting_chain(&self, generation: u64);
    /// What the server asked of membership since the last call.
    fn take_membership_requests(&self) -> MembershipRequests;
    /// We removed a neighbour from the chain on this evidence (counted in
    /// `stats`).
    fn removed(&self, evidence: Evidence);
}

/// What the server asked of the membership thread (which writes to
/// ZooKeeper) and it has not done yet.
#[derive(Debug, Default)]
pub struct MembershipRequests {
    /// Announce us ready: a joining server caught up after the hand-over.
    pub announce_ready: bool,
    /// Write this commit record into the chain node.
    pub record: Option<CommitRecord>,
    /// End this registration and register again, for this reason.
    pub reregister: Option<&'static str>,
    /// Remove this member from the chain (a neighbour proved it dead).
    pub remove: Option<Removal>,
}

/// A member to remove, and why (see `chain::eviction`).
#[derive(Debug, PartialEq, Eq)]
pub struct Removal {
    pub name: String,
    pub evidence: Evidence,
}

/// Why [`run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum MembershipEnd {
    /// The server is stopping.
    Stopped,
    /// The session expired and `exit_on_expiry` is set.
    Expired,
}

/// Something happened in ZooKeeper that needs a look.
enum Event {
    /// Session state changed.
    State(ZkState),
    /// The session watcher saw expiry.
    Expired,
    /// A watch on the chain fired.
    ChainChanged,
}

/// Runs membership until `stopping` is set, or until the session expires
/// with `exit_on_expiry`.
pub fn run(
    config: &ChainConfig,
    replica: &impl Member,
    requests: &Receiver<()>,
    stopping: &AtomicBool,
) -> MembershipEnd {
    let mut retry_pause = MEMBERSHIP_RETRY_PAUSE;
    while !stopping.load(Ordering::SeqCst) {
        let outcome = Session::open(config).and_then(|session| {
            session.serve(replica, requests, stopping).map_err(|error| error.to_string())
        });
        match outcome {
            Ok(SessionEnd::Stopped) => return MembershipEnd::Stopped,
            Ok(SessionEnd::Expired(reason)) => {
                retry_pause = MEMBERSHIP_RETRY_PAUSE;
                replica.fence(&reason);
                if config.exit_on_expiry {
                    return MembershipEnd::Expired;
                }
                info!("rejoining the chain");
            }
            Err(error) => {
                replica.fence(&format!("ZooKeeper: {error}"));
                if let Some(held_back) = RETRY_WARNINGS.due() {
                    warn!(
                        "ZooKeeper at {}: {error}; retrying{}",
                        config.zk_hosts,
                        suppressed_note(held_back)
                    );
                }
                std::thread::sleep(retry_pause);
                retry_pause = (retry_pause * 2).min(ZK_RECONNECT_PAUSE_MAX);
            }
        }
    }
    MembershipEnd::Stopped
}

enum SessionEnd {
    Stopped,
    Expired(String),
}

/// What a confirmation of the session found.
enum Confirmation {
    /// The session is ours: the lease is renewed.
    Renewed,
    /// No answer for now (the connection is being re-established).
    Failed,
    Ended(SessionEnd),
}

/// One ZooKeeper session and our registration in it.
struct Session<'config> {
    config: &'config ChainConfig,
    zk: BoundedZk,
    events: Receiver<Event>,
}

impl<'config> Session<'config> {
    fn open(config: &'config ChainConfig) -> Result<Session<'config>, String> {
        let (event_sender, events) = crossbeam_channel::bounded(MEMBERSHIP_EVENTS_QUEUED_MAX);
        let session_events = event_sender.clone();
        let zk = zk::connect(&config.zk_hosts, config.session_timeout, move |event: WatchedEvent| {
            if event.keeper_state == KeeperState::Expired {
                let _ = session_events.try_send(Event::Expired);
            }
        })
        .map_err(|error| error.to_string())?;
        let state_events = event_sender.clone();
        zk.add_listener(move |state| {
            let _ = state_events.try_send(Event::State(state));
        });
        let zk = BoundedZk::new(zk, config.session_timeout)
            .map_err(|error| format!("cannot start the ZooKeeper worker: {error}"))?;
        let chain_path = config.chain_path.clone();
        let identity = config.zk_identity.clone();
        let chain_events = event_sender;
        zk.call(move |zk| {
            if let Some(identity) = &identity {
                acl::authenticate(zk, identity)?;
            }
            acl::ensure_chain_node(zk, &chain_path, identity.as_ref())?;
            zk.add_watch(&chain_path, AddWatchMode::PersistentRecursive, move |_: WatchedEvent| {
                let _ = chain_events.try_send(Event::ChainChanged);
            })
        })
        .map_err(|error| format!("watching {}: {error}", config.chain_path))?;
        Ok(Session { config, zk, events })
    }

    /// Registers, then follows the chain until the session ends, doing
    /// what the registration (the core's decisions) says is owed.
    fn serve(
        self,
        replica: &impl Member,
        requests: &Receiver<()>,
        stopping: &AtomicBool,
    ) -> Result<SessionEnd, ZkError> {
        // Requests from before this registration are void: a hand-over
        // belongs to the old registration, and the node asks for a record
        // again at its next tick.
        while requests.try_recv().is_ok() {}
        drop(replica.take_membership_requests());
        let clock = Instant::now();
        let now_ms = || clock.elapsed().as_millis() as u64;
        let node = self.register(replica)?;
        let mut registration = Registration::new(node.name.clone(), self.timing(), now_ms());
        let mut owner = None;
        let mut view_dirty = true;
        let mut next_view_read = Instant::now();
        loop {
            if stopping.load(Ordering::SeqCst) {
                // Closing the session (on drop) removes our node at once.
                return Ok(SessionEnd::Stopped);
            }
            for duty in registration.duties(now_ms()) {
                // Every duty done may change the chain: read it again.
                view_dirty = true;
                match duty {
                    Duty::Confirm => {
                        let sent_ms = now_ms();
                        match self.confirm_session(&node, &mut owner) {
                            Confirmation::Renewed => {
                                let until_ms = registration.confirmed(sent_ms);
                                replica.renew_lease(clock + Duration::from_millis(until_ms));
                            }
                            // The crate's I/O thread may be gone (it panics
                            // on a peer that is not a ZooKeeper) and then no
                            // state change ever comes: the registration gives
                            // up on the session after its timeout.
                            Confirmation::Failed => {
                                if let Err(reason) = registration.confirm_failed(now_ms()) {
                                    return Ok(SessionEnd::Expired(reason.into()));
                                }
                            }
                            Confirmation::Ended(end) => return Ok(end),
                        }
                    }
                    Duty::Announce => {
                        if self.announce(&node, Readiness::Ready, replica.server_id())? {
                            registration.announced();
                        }
                    }
                    Duty::WriteRecord(record) => {
                        if self.write_record(&record)? {
                            registration.record_written(&record);
                            // Our own write, not a burst of others': read it
                            // back at once, since we commit only once our view
                            // shows it (the failover gap waited for this).
                            next_view_read = Instant::now();
                        }
                    }
                }
            }
            if view_dirty && Instant::now() >= next_view_read {
                next_view_read = Instant::now() + VIEW_READ_INTERVAL_MIN;
                match self.zk.read_view(&self.config.chain_path) {
                    Ok(view) => {
                        if let Err(reason) = registration.listed_in(&view) {
                            return Ok(SessionEnd::Expired(reason.into()));
                        }
                        replica.set_view(&view, registration.name());
                        let holding = replica.holding();
                        match registration.bootstrap(&view, holding, now_ms()) {
                            ViewVerdict::Follow => view_dirty = false,
                            ViewVerdict::AwaitingNamedMember => {
                                self.warn_awaiting_named_member(&view);
                                view_dirty = false;
                            }
                            ViewVerdict::Start { decision, generation } => {
                                replica.starting_chain(generation);
                                // If ZooKeeper is unreachable now, the next
                                // view read tries again.
                                if self.announce(&node, Readiness::Ready, replica.server_id())? {
                                    let registered_ms = registration.registered_for_ms(now_ms());
                                    self.log_start(&view, &decision, generation, holding, registered_ms);
                                }
                                view_dirty = true;
                            }
                            ViewVerdict::Leave(reason) => return Ok(SessionEnd::Expired(reason.into())),
                        }
                    }
                    Err(ZkError::SessionExpired) => return Ok(SessionEnd::Expired("session expired".into())),
                    Err(ZkError::OperationTimeout) => return Err(ZkError::OperationTimeout),
                    // The lease runs out if this lasts; the crate reports
                    // the session closed if it is lost.
                    Err(error) => {
                        next_view_read = Instant::now() + MEMBERSHIP_RETRY_PAUSE;
                        if let Some(held_back) = CALL_WARNINGS.due() {
                            warn!("cannot read the chain: {error:?}{}", suppressed_note(held_back));
                        }
                    }
                }
            }
            let now = now_ms();
            let mut wait = Duration::from_millis(registration.next_due_ms(now).saturating_sub(now));
            if view_dirty {
                wait = wait.min(next_view_read.saturating_duration_since(Instant::now()));
            }
            select! {
                recv(self.events) -> event => match event {
                    Ok(Event::ChainChanged) => view_dirty = true,
                    Ok(Event::State(ZkState::Connected)) => {
                        info!("connected to ZooKeeper");
                        self.authenticate()?;
                        view_dirty = true;
                        // Renew the lease at once after a reconnection.
                        registration.confirm_now(now_ms());
                    }
                    Ok(Event::State(ZkState::Closed | ZkState::AuthFailed)) | Ok(Event::Expired) => {
                        return Ok(SessionEnd::Expired("ZooKeeper session closed or expired".into()));
                    }
                    Ok(Event::State(state)) => info!("ZooKeeper connection: {state:?}"),
                    Err(_) => unreachable!("the session holds a sender"),
                },
                recv(requests) -> _ => {
                    let taken = replica.take_membership_requests();
                    if let Some(reason) = taken.reregister {
                        return Ok(SessionEnd::Expired(reason.into()));
                    }
                    if taken.announce_ready {
                        registration.announce_requested();
                    }
                    if let Some(removal) = taken.remove {
                        if self.remove_member(&removal)? {
                            replica.removed(removal.evidence);
                            // The chain we act in changed by our hand: read
                            // it at once.
                            next_view_read = Instant::now();
                        }
                        view_dirty = true;
                    }
                    if let Some(record) = taken.record {
                        registration.record_requested(record);
                    }
                }
                default(wait) => {}
            }
        }
    }

    /// The session timing of our registrations, from the configured timeout.
    fn timing(&self) -> SessionTiming {
        let timeout = self.config.session_timeout;
        SessionTiming {
            timeout_ms: timeout.as_millis() as u64,
            confirm_interval_ms: timeout.mul_f64(LEASE_CHECK_SHARE).as_millis() as u64,
            lease_ms: timeout.mul_f64(LEASE_SHARE).as_millis() as u64,
            retry_ms: MEMBERSHIP_RETRY_PAUSE.as_millis() as u64,
        }
    }

    /// Authenticates the connection again after a reconnection (ZooKeeper
    /// ties it to the connection); until then writes fail with `NoAuth`
    /// and are tried again.
    fn authenticate(&self) -> Result<(), ZkError> {
        let Some(identity) = self.config.zk_identity.clone() else {
            return Ok(());
        };
        match self.zk.call(move |zk| acl::authenticate(zk, &identity)) {
            // Lost again: the next connection authenticates.
            Ok(()) | Err(ZkError::ConnectionLoss) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Reads our own node to confirm the session is alive.
    fn confirm_session(&self, registration: &MemberNode, owner: &mut Option<i64>) -> Confirmation {
        let path = registration.path.clone();
        match self.zk.call(move |zk| zk.exists(&path, false)) {
            Ok(Some(stat)) => {
                if *owner.get_or_insert(stat.ephemeral_owner) != stat.ephemeral_owner {
                    return Confirmation::Ended(SessionEnd::Expired(
                        "our node belongs to another session".into(),
                    ));
                }
                Confirmation::Renewed
            }
            Ok(None) => Confirmation::Ended(SessionEnd::Expired("our node is gone".into())),
            Err(ZkError::SessionExpired) => {
                Confirmation::Ended(SessionEnd::Expired("session expired".into()))
            }
            Err(ZkError::OperationTimeout) => Confirmation::Ended(SessionEnd::Expired(
                "ZooKeeper did not answer within the session timeout".into(),
            )),
            Err(error) => {
                if let Some(held_back) = CALL_WARNINGS.due() {
                    warn!("cannot confirm the ZooKeeper session: {error:?}{}", suppressed_note(held_back));
                }
                Confirmation::Failed
            }
        }
    }

    /// Removes a member a neighbour proved dead, by deleting its node.
    ///
    /// One ZooKeeper operation, conditional by construction: a member's
    /// node name carries a sequence number ZooKeeper never hands out twice,
    /// so the delete can only end that one registration, and of two
    /// neighbours racing to remove it exactly one succeeds (the other gets
    /// `NoNode` and does nothing). The chain node's child version (our view
    /// epoch) moves with it, so every link and reply of the removed member
    /// is fenced by the epoch checks; if it was alive after all, it finds
    /// its node gone, fences itself and registers again as a new member.
    /// The chain record is untouched: the commit record names servers, not
    /// registrations. Logged once, here, with its evidence. Returns whether
    /// this call removed it.
    fn remove_member(&self, removal: &Removal) -> Result<bool, ZkError> {
        let path = format!("{}/{}", self.config.chain_path, removal.name);
        match self.zk.call(move |zk| zk.delete(&path, None)) {
            Ok(()) => {
                info!("removed {} from the chain: {}", removal.name, removal.evidence);
                Ok(true)
            }
            Err(ZkError::NoNode) => {
                debug!("{} had left the chain already", removal.name);
                Ok(false)
            }
            // Session expiry stays the fallback: the member's session
            // times out if ZooKeeper cannot be told now.
            Err(ZkError::ConnectionLoss | ZkError::OperationTimeout | ZkError::NoAuth) => {
                warn!("could not remove {} from the chain (ZooKeeper unreachable)", removal.name);
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Writes our node's data with `readiness`; false if ZooKeeper could not
    /// be reached (try again later).
    fn announce(
        &self,
        registration: &MemberNode,
        readiness: Readiness,
        server_id: u64,
    ) -> Result<bool, ZkError> {
        let data = encode_member_data(&self.config.advertise, readiness, &registration.token, server_id);
        let path = registration.path.clone();
        match self.zk.call(move |zk| zk.set_data(&path, data, None)) {
            Ok(_) => {
                info!("announced {readiness} in ZooKeeper");
                Ok(true)
            }
            Err(ZkError::ConnectionLoss | ZkError::OperationTimeout | ZkError::NoAuth) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// No ready member, and none of the servers that held every committed
    /// write is here (once per registration).
    fn warn_awaiting_named_member(&self, view: &ChainView) {
        let timeout_ms = self.config.session_timeout.as_millis() as u64;
        warn!(
            "no ready member, and none of the servers that held every committed write ({:?}) is here: \
             waiting {} s for one to come back; then the chain restarts without them, and the writes it \
             committed (up to at least {}: the tail records it at most once a second) that the restarting \
             server lacks are LOST",
            view.record.servers,
            RESTART_FALLBACK_TIMEOUTS * timeout_ms / 1000,
            view.record.committed
        );
    }

    /// Says that we started the chain, and how.
    fn log_start(
        &self,
        view: &ChainView,
        decision: &Bootstrap,
        generation: u64,
        holding: Holding,
        registered_ms: u64,
    ) {
        let record = &view.record;
        let table = match holding.recoverable_history {
            Some(last_applied) => format!("from this server's table (writes up to {last_applied})"),
            None => "empty".to_owned(),
        };
        match decision {
            Bootstrap::Start if record.epoch == 0 => {
                info!("no chain at {} yet: starting the chain as generation 1", self.config.chain_path)
            }
            Bootstrap::Start => info!(
                "no ready member: restarting the chain {table} as generation {generation}; \
                 this server held every committed write"
            ),
            _ => error!(
                "no ready member, and none of the servers that held every committed write ({:?}) came back in {} s: \
                 the previous chain had committed writes up to at least {} (the tail records its commit point at \
                 most once a second: writes in the second before the loss are not counted); starting {table} as \
                 generation {generation}; writes acknowledged after what this server holds are LOST",
                record.servers,
                registered_ms / 1000,
                record.committed
            ),
        }
    }

    /// Writes `record` into the chain node unless a newer one is there
    /// (compare-and-set on the node's version); false if it must be tried
    /// again (ZooKeeper unreachable, or the node changed meanwhile).
    fn write_record(&self, record: &CommitRecord) -> Result<bool, ZkError> {
        let path = self.config.chain_path.clone();
        let (data, wanted) = (record.encode(), record.clone());
        let written = self.zk.call(move |zk| {
            let (current, stat) = zk.get_data(&path, false)?;
            if !wanted.may_replace(&CommitRecord::parse(&current)) {
                return Ok(false);
            }
            zk.set_data(&path, data, Some(stat.version)).map(|_| true)
        });
        match written {
            Ok(true) => {
                debug!(
                    "commit record: epoch {} servers {:?} generation {} committed {}",
                    record.epoch, record.servers, record.generation, record.committed
                );
                Ok(true)
            }
            // A newer record: ours is moot; the view will show it.
            Ok(false) => Ok(true),
            Err(
                ZkError::BadVersion | ZkError::ConnectionLoss | ZkError::OperationTimeout | ZkError::NoAuth,
            ) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Creates our EPHEMERAL_SEQUENTIAL node. A server holding a former
    /// member's complete table registers as recovering: if a chain exists it
    /// is replaced by a state transfer like any newcomer's, and if none does
    /// (every member lost its session) it may restart the chain. We cannot
    /// tell from here: after a ZooKeeper restart the old sessions' nodes
    /// linger as ready members until they expire. Anyone else joins empty.
    /// A create whose reply was lost may still have created the node, so
    /// after an error we look for our token before trying again.
    fn register(&self, replica: &impl Member) -> Result<MemberNode, ZkError> {
        let token = format!("{:016x}", RandomState::new().hash_one(Instant::now()));
        let readiness = replica.registration();
        let server_id = replica.server_id();
        let prefix = format!("{}/{MEMBER_PREFIX}", self.config.chain_path);
        let data = encode_member_data(&self.config.advertise, readiness, &token, server_id);
        let node_acl = acl::chain_acl(self.config.zk_identity.as_ref());
        let created =
            self.zk.call(move |zk| zk.create(&prefix, data, node_acl, CreateMode::EphemeralSequential));
        let path = match created {
            Ok(path) => path,
            Err(error) => {
                let view = self.zk.read_view(&self.config.chain_path)?;
                let ours = view.members.iter().find(|member| member.token == token);
                match ours {
                    Some(member) => format!("{}/{}", self.config.chain_path, member.name),
                    None => return Err(error),
                }
            }
        };
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        info!("registered as {name} ({readiness}) at {}", self.config.advertise);
        Ok(MemberNode { path, name, token })
    }
}

/// Our node in ZooKeeper for one registration.
struct MemberNode {
    /// Full path of our node.
    path: String,
    /// Its last component, as peers see it.
    name: String,
    /// Random token in our node's data.
    token: String,
}
