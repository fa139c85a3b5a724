//! A container puts what one loop turn emits for a peer into as few frame sets
//! as `run.batch_max` allows: `[identity](envelope)+`, in order, each envelope
//! one packed frame (`[0x00][varint header length][header][payload]`).

mod cluster;

use std::time::{Duration, Instant};

use cluster::*;
use exchange_idl::exchange::v1 as pb;
use prost::Message as _;

/// Sends one-way events as fast as its loop turns, 64 a turn.
const FLOOD: Member = Member {
    name: "flood",
    kind: "pinger",
    id: 11,
    handles: &[],
    subscribes: &[],
    settings: "one_way = true\nburst = 64\n",
};
/// Not a container: the test's own ROUTER socket stands in for it.
const RAW: Member = Member {
    name: "raw",
    kind: "echo",
    id: 20,
    handles: &["bench.event"],
    subscribes: &[],
    settings: "",
};

#[test]
fn a_turns_messages_for_a_peer_travel_several_to_a_frame_set_in_order() {
    let mut cluster = Cluster::of(&[FLOOD, RAW]);
    let context = zmq::Context::new();
    let raw = context.socket(zmq::ROUTER).unwrap();
    raw.set_linger(0).unwrap();
    // The routing id a node announces: `n` + its id, big-endian.
    let mut identity = vec![b'n'];
    identity.extend_from_slice(&RAW.id.to_be_bytes());
    raw.set_identity(&identity).unwrap();
    raw.set_rcvtimeo(100).unwrap();
    raw.bind(&cluster.app_endpoint(RAW)).unwrap();
    cluster.start_with_env(FLOOD, "", &[("EXCHANGE__RUN__BATCH_MAX", "8")]);

    let started = Instant::now();
    let (mut sets, mut envelopes, mut largest) = (0, 0, 0);
    let mut last_id = 0;
    while envelopes < 5_000 && started.elapsed() < Duration::from_secs(20) {
        let Ok(frames) = raw.recv_multipart(0) else {
            continue;
        };
        let (sender, packed) = frames.split_first().expect("the identity");
        assert_eq!(sender[..], [b'n', 0, 0, 0, 0, 0, 0, 0, 11]);
        assert!(!packed.is_empty(), "envelopes after the identity");
        for frame in packed {
            let (header, payload) = unpack(frame);
            assert_eq!(payload.len(), 64, "the pinger's payload");
            let header = pb::Envelope::decode(header).expect("a header");
            assert_eq!(header.name, "bench.event");
            assert!(
                header.id > last_id,
                "in order: {} after {last_id}",
                header.id
            );
            last_id = header.id;
        }
        sets += 1;
        envelopes += packed.len();
        largest = largest.max(packed.len());
    }
    assert!(
        envelopes >= 5_000,
        "the flood arrived: {envelopes} in {sets} sets"
    );
    assert!(largest <= 8, "never more than batch_max: {largest}");
    assert!(
        sets < envelopes,
        "a turn's 64 events travel several to a frame set: {envelopes} in {sets} sets"
    );
    let (status, stdout, _) = cluster.terminate(FLOOD, Duration::from_secs(2));
    assert!(status.success(), "{stdout}");
}

/// A packed envelope frame, as PROTOCOL.md describes it, split into header and
/// payload.
fn unpack(frame: &[u8]) -> (&[u8], &[u8]) {
    assert_eq!(frame.first(), Some(&0), "a packed frame starts with 0x00");
    let (mut len, mut shift, mut at) = (0usize, 0, 1);
    loop {
        let byte = frame[at];
        len |= usize::from(byte & 0x7f) << shift;
        at += 1;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
        assert!(shift < 35, "a header length of at most five bytes");
    }
    frame[at..].split_at(len)
}
