//! The driver's decisions, step by step (see the protocol in `migration`).

use super::*;

const SPAN: Span = Span { first: 100, last: 199 };

fn map(text: &str, version: u64) -> ShardMap {
    ShardMap::parse(format!("chaintable-shards 1\n{text}").as_bytes(), version).expect("a valid map")
}

/// A driver that claimed attempt 5 and streamed a snapshot of 10 items,
/// the target acking all but `owed`.
fn streaming(bug: Option<Check>, owed: u64) -> Driver {
    let (mut driver, steps) = Driver::start(SPAN, 4, false, bug);
    assert_eq!(steps, [Step::Claim { version: 4 }]);
    assert_eq!(driver.claim_answered(ZkAnswer::Done { version: 5 }), [Step::Stream { attempt: 5 }]);
    driver.sent(5, 10, true);
    driver.acked(5, 10 - owed);
    driver
}

/// Paused at marker 20, with writes up to 19 committed and forwarded.
fn draining(bug: Option<Check>, owed: u64) -> Driver {
    let mut driver = streaming(bug, owed);
    assert_eq!(driver.tick(1_000), [Step::Pause { attempt: 5 }]);
    assert!(driver.paused());
    driver.paused_at(20);
    driver.progress(19, 19);
    driver
}

#[test]
fn a_migration_claims_streams_pauses_drains_and_flips() {
    let mut driver = draining(None, 0);
    assert_eq!(driver.tick(1_001), [], "the marker is not committed yet");
    driver.progress(20, 20);
    assert_eq!(driver.tick(1_002), [Step::Flip { base: 5 }]);
    assert_eq!(driver.flip_answered(ZkAnswer::Done { version: 6 }), [Step::Finished { version: 6 }]);
    assert!(driver.over() && driver.paused(), "the slots are never resumed after a flip");
    assert_eq!(driver.map_read(MapSays::Source { version: 7 }), [], "over is over");
    assert_eq!(driver.span(), SPAN);
}

#[test]
fn the_pause_waits_for_the_snapshot_and_a_short_backlog() {
    let (mut driver, _) = Driver::start(SPAN, 4, false, None);
    driver.claim_answered(ZkAnswer::Done { version: 5 });
    driver.sent(5, 100, false);
    driver.acked(5, 100);
    assert_eq!(driver.tick(1), [], "the snapshot is not all out");
    driver.sent(5, PAUSE_BACKLOG_ITEMS + 1, true);
    assert_eq!(driver.tick(2), [], "the target owes too many acks");
    driver.sent(4, 1, false);
    driver.acked(5, 101);
    assert_eq!(driver.tick(3), [Step::Pause { attempt: 5 }], "frames of an older attempt do not count");
    assert_eq!(driver.phase(), Phase::Draining { attempt: 5, marker: 0, since_ms: 3 });
}

/// The rule (`flip-before-drain` removes it): no flip while the target has
/// not committed everything sent, or before the pause marker committed
/// here, or before every write up to it was forwarded.
#[test]
fn the_flip_waits_for_the_drain() {
    let mut owing = draining(None, 1);
    owing.progress(20, 20);
    assert_eq!(owing.tick(1_010), [], "the target owes an ack");
    owing.acked(5, 10);
    assert_eq!(owing.tick(1_011), [Step::Flip { base: 5 }]);
    let mut unforwarded = draining(None, 0);
    unforwarded.progress(19, 20);
    assert_eq!(unforwarded.tick(1_010), [], "a write before the marker is not forwarded yet");
    let mut early = draining(Some(Check::FlipBeforeDrain), 1);
    assert_eq!(early.tick(1_010), [Step::Flip { base: 5 }], "flip-before-drain flips at once");
}

#[test]
fn a_pause_that_does_not_drain_is_given_up_but_never_once_a_flip_was_asked() {
    let mut stuck = draining(None, 3);
    assert_eq!(stuck.tick(1_000 + PAUSE_MS_MAX - 1), []);
    assert_eq!(stuck.tick(1_000 + PAUSE_MS_MAX), [Step::Resume]);
    assert!(!stuck.paused());
    assert_eq!(stuck.phase(), Phase::Streaming { attempt: 5 });
    let mut flipping = draining(None, 0);
    flipping.progress(20, 20);
    assert_eq!(flipping.tick(1_001), [Step::Flip { base: 5 }]);
    assert_eq!(flipping.tick(1_000 + 10 * PAUSE_MS_MAX), [], "time never resumes a flip");
    assert_eq!(flipping.link_broken(), [], "nor does a broken link");
}

/// A lost answer to the flip: the slots stay paused; the same version in
/// the map means it did not happen (ask again, version-checked), the
/// target owning the slots means it did, the source owning them stable
/// means the command aborted it.
#[test]
fn a_lost_flip_answer_is_settled_by_reading_the_map() {
    let mut driver = draining(None, 0);
    driver.progress(20, 20);
    driver.tick(1_001);
    assert_eq!(driver.flip_answered(ZkAnswer::Unknown), [Step::ReadMap]);
    assert_eq!(driver.map_read(MapSays::Migrating { version: 5 }), [Step::Flip { base: 5 }]);
    assert_eq!(driver.flip_answered(ZkAnswer::BadVersion), [Step::ReadMap]);
    assert!(driver.paused());
    let mut done = draining(None, 0);
    done.progress(20, 20);
    done.tick(1_001);
    assert_eq!(done.map_read(MapSays::Moved { version: 6 }), [Step::Finished { version: 6 }]);
    let mut aborted = draining(None, 0);
    aborted.progress(20, 20);
    aborted.tick(1_001);
    assert_eq!(aborted.map_read(MapSays::Source { version: 6 }), [Step::Resume, Step::Abandoned]);
    let mut overtaken = draining(None, 0);
    overtaken.progress(20, 20);
    overtaken.tick(1_001);
    assert_eq!(overtaken.map_read(MapSays::Migrating { version: 7 }), [Step::Claim { version: 7 }]);
    assert!(overtaken.paused(), "a pause after a flip ends only with a successful claim");
    assert_eq!(
        overtaken.claim_answered(ZkAnswer::Done { version: 8 }),
        [Step::Resume, Step::Stream { attempt: 8 }]
    );
}

/// A new head whose history holds the slots paused keeps them paused
/// until its own claim succeeds (which fences every older driver's flip).
#[test]
fn a_new_head_resumes_an_inherited_pause_only_after_its_claim() {
    let (mut driver, steps) = Driver::start(SPAN, 9, true, None);
    assert_eq!(steps, [Step::Claim { version: 9 }]);
    assert_eq!(driver.claim_answered(ZkAnswer::Unknown), [Step::ReadMap]);
    assert!(driver.paused());
    assert_eq!(driver.map_read(MapSays::Mixed { version: 10 }), []);
    assert_eq!(driver.map_read(MapSays::Migrating { version: 10 }), [Step::Claim { version: 10 }]);
    assert!(driver.paused());
    assert_eq!(driver.claim_answered(ZkAnswer::BadVersion), [Step::ReadMap]);
    assert_eq!(driver.map_read(MapSays::Migrating { version: 11 }), [Step::Claim { version: 11 }]);
    assert_eq!(
        driver.claim_answered(ZkAnswer::Done { version: 12 }),
        [Step::Resume, Step::Stream { attempt: 12 }]
    );
    let (mut flipped, _) = Driver::start(SPAN, 9, true, None);
    flipped.claim_answered(ZkAnswer::BadVersion);
    assert_eq!(flipped.map_read(MapSays::Moved { version: 10 }), [Step::Finished { version: 10 }]);
    assert!(flipped.paused(), "what may have flipped is never resumed");
}

#[test]
fn a_broken_link_starts_a_new_attempt() {
    let mut driver = draining(None, 2);
    assert_eq!(driver.link_broken(), [Step::Resume, Step::Claim { version: 5 }]);
    assert_eq!(driver.claim_answered(ZkAnswer::Done { version: 6 }), [Step::Stream { attempt: 6 }]);
    assert_eq!(driver.tick(2_000), [], "the new attempt's snapshot is not out");
    let mut streaming = streaming(None, 5);
    assert_eq!(streaming.map_read(MapSays::Migrating { version: 5 }), [], "our own claim");
    assert_eq!(streaming.link_broken(), [Step::Claim { version: 5 }]);
    assert_eq!(streaming.flip_answered(ZkAnswer::Done { version: 9 }), [], "no flip was asked");
}

#[test]
fn the_map_says_where_the_slots_are() {
    let says = |text: &str| MapSays::of(&map(text, 3), SPAN, "/a", "/b");
    assert_eq!(says("0-16383 /a migrating-to /b\n"), MapSays::Migrating { version: 3 });
    assert_eq!(
        says("0-99 /a\n100-199 /a migrating-to /b\n200-16383 /a\n"),
        MapSays::Migrating { version: 3 }
    );
    assert_eq!(says("0-16383 /a\n"), MapSays::Source { version: 3 });
    assert_eq!(says("0-99 /a\n100-199 /b\n200-16383 /a\n"), MapSays::Moved { version: 3 });
    assert_eq!(says("0-149 /a\n150-16383 /c\n"), MapSays::Moved { version: 3 });
    assert_eq!(says("0-149 /a\n150-16383 /a migrating-to /b\n"), MapSays::Mixed { version: 3 });
    assert_eq!(says("0-16383 /a migrating-to /c\n"), MapSays::Mixed { version: 3 });
    assert!(SPAN.contains(100) && SPAN.contains(199) && !SPAN.contains(200));
}
