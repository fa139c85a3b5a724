//! `exchange run` against bad input: garbage frames straight at the app socket
//! are counted as `malformed` and the container keeps serving; an oversize
//! payload is refused at the sender with `TooLarge`; a port already in use and a
//! malformed or unresolvable endpoint are clear errors, and so are bad
//! `[discovery]` settings (no or a short cluster key, a seed that does not
//! resolve, an address others cannot reach).

mod cluster;

use std::process::Command;
use std::time::Duration;

use cluster::*;
use exchange_idl::exchange::v1 as pb;
use exchange_idl::kv::v1::Put;
use prost::Message as _;

#[test]
fn garbage_frames_are_counted_malformed_and_the_container_keeps_serving() {
    let mut cluster = Cluster::new();
    cluster.start(STORE, "");
    cluster.status(STORE);

    let context = zmq::Context::new();
    let raw = context.socket(zmq::DEALER).unwrap();
    raw.set_linger(0).unwrap();
    raw.connect(&cluster.app_endpoint(STORE)).unwrap();
    // A frame set is envelopes after the identity ZeroMQ adds, each a
    // `[header][payload]` pair or one packed frame. Garbage: a lone frame, a
    // pair whose header does not decode, and (in `[a][b][c]`) both.
    raw.send_multipart([&b"just one frame"[..]], 0).unwrap();
    raw.send_multipart([&b"\xff\xff"[..], b"payload"], 0)
        .unwrap();
    raw.send_multipart([&b"a"[..], b"b", b"c"], 0).unwrap();
    // Then well-formed one-way puts, from a stranger: two in one frame set,
    // then one followed by a frame without its pair. The puts are handled.
    let put = |id: u64| {
        let envelope = pb::Envelope {
            id,
            name: "kv.put".into(),
            kind: pb::Kind::Send as i32,
            source: Some(pb::Address {
                node: 99,
                component: 0,
            }),
            ..Default::default()
        };
        let put = Put {
            key: format!("k{id}"),
            value: b"v".to_vec(),
        };
        [envelope.encode_to_vec(), put.encode_to_vec()]
    };
    let [h1, p1] = put(1);
    let [h2, p2] = put(2);
    raw.send_multipart([h1, p1, h2, p2], 0).unwrap();
    let [h3, p3] = put(3);
    raw.send_multipart([h3, p3, b"no payload".to_vec()], 0)
        .unwrap();
    // Packed frames, `[0x00][varint header length][header][payload]`, mixed
    // with a pair in one set: a length that runs past the frame and one that
    // never ends are garbage each, as is a packed header that does not decode;
    // the envelopes between them are handled.
    let packed = |[header, payload]: [Vec<u8>; 2]| {
        let mut frame = vec![0, u8::try_from(header.len()).unwrap()];
        frame.extend(header);
        frame.extend(payload);
        frame
    };
    let [h5, p5] = put(5);
    raw.send_multipart(
        [
            b"\0\x09short".to_vec(),
            packed(put(4)),
            h5,
            p5,
            b"\0\x80".to_vec(),
            packed([b"\xff\xff".to_vec(), b"payload".to_vec()]),
            packed(put(6)),
        ],
        0,
    )
    .unwrap();

    let status = cluster.wait_for(STORE, Duration::from_secs(5), |s| {
        s.components[0].handled == 6
    });
    assert_eq!(status.node_dropped.get("malformed"), Some(&8), "{status:?}");
    assert_eq!(status.frames_in, 14);
    let (exit, _, _) = cluster.terminate(STORE, Duration::from_secs(2));
    assert!(exit.success());
}

#[test]
fn an_oversize_payload_is_refused_at_the_sender_with_too_large() {
    let mut cluster = Cluster::new();
    cluster.start(STORE, "");
    cluster.start(FEED, "");
    // Every post the load generator makes is larger than 16 bytes.
    cluster.start(LOADGEN, "[node]\nmessage_bytes_max = 16\n");
    let status = cluster.wait_for(LOADGEN, Duration::from_secs(10), |s| {
        s.node_bounced.get("too_large").copied().unwrap_or(0) > 10
    });
    let returned = status.components[0]
        .returned
        .get("too_large")
        .copied()
        .unwrap_or(0);
    assert!(
        returned > 10,
        "the load generator got its payloads back: {status:?}"
    );
    let feed = cluster.status(FEED);
    // (Replies to the load generator before its connection back was up are
    // dropped as `no_handler`; nothing oversize or malformed arrived.)
    for reason in ["too_large", "malformed"] {
        assert_eq!(
            feed.node_dropped.get(reason),
            None,
            "nothing oversize reached the feed: {feed:?}"
        );
    }
}

fn run_error(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["run", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success(), "a bad config must not run");
    String::from_utf8_lossy(&output.stderr).replace(path.to_str().unwrap(), "[FILE]")
}

const COMPONENT: &str = "[[component]]\nname = \"store\"\n";

#[test]
fn a_port_in_use_says_which() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let error = run_error(&format!(
        "[run]\nnode_id = 1\nlisten = \"tcp://127.0.0.1:{port}\"\ncontrol = \"tcp://127.0.0.1:0\"\n{COMPONENT}"
    ));
    assert!(
        error.contains(&format!(
            "cannot bind tcp://127.0.0.1:{port}: the address is already in use"
        )),
        "{error}"
    );
}

#[test]
fn malformed_and_unresolvable_endpoints_are_clear_errors() {
    let malformed = run_error(&format!(
        "[run]\nnode_id = 1\nlisten = \"127.0.0.1:7000\"\ncontrol = \"tcp://127.0.0.1:0\"\n{COMPONENT}"
    ));
    let no_port = run_error(&format!(
        "[run]\nnode_id = 1\nlisten = \"tcp://127.0.0.1\"\ncontrol = \"tcp://127.0.0.1:0\"\n{COMPONENT}"
    ));
    let unresolvable = run_error(&format!(
        "[run]\nnode_id = 1\nlisten = \"tcp://127.0.0.1:0\"\ncontrol = \"tcp://127.0.0.1:0\"\n{COMPONENT}\n[[peer]]\nnode_id = 2\nendpoint = \"tcp://no-such-host.invalid:7000\"\n"
    ));
    let duplicate = run_error(&format!(
        "[run]\nnode_id = 1\nlisten = \"tcp://127.0.0.1:0\"\ncontrol = \"tcp://127.0.0.1:0\"\n{COMPONENT}\n[[peer]]\nnode_id = 1\nendpoint = \"tcp://127.0.0.1:7000\"\n"
    ));
    let missing = run_error(COMPONENT);
    let unresolvable_line = unresolvable.lines().next().unwrap_or_default().to_owned();
    assert!(unresolvable_line.starts_with("exchange: config [FILE]: peer[0].endpoint = \"tcp://no-such-host.invalid:7000\": host \"no-such-host.invalid\" does not resolve"), "{unresolvable}");
    insta::assert_snapshot!([malformed, no_port, duplicate, missing].join(""));
}

#[test]
fn bad_discovery_settings_are_clear_errors() {
    let run =
        "[run]\nnode_id = 1\nlisten = \"tcp://127.0.0.1:0\"\ncontrol = \"tcp://127.0.0.1:0\"\n";
    let with = |discovery: &str| run_error(&format!("{run}{COMPONENT}[discovery]\n{discovery}"));
    let no_key = with("listen = \"127.0.0.1:0\"\nadvertise = \"127.0.0.1:7301\"\n");
    let short_key = with("listen = \"127.0.0.1:7301\"\ncluster_key = \"short\"\n");
    let unspecified = with("listen = \"0.0.0.0:7301\"\ncluster_key = \"0123456789abcdef\"\n");
    let no_port = with(
        "listen = \"127.0.0.1:7301\"\nseeds = [\"127.0.0.1\"]\ncluster_key = \"0123456789abcdef\"\n",
    );
    let unresolvable = with(
        "listen = \"127.0.0.1:7301\"\nseeds = [\"no-such-host.invalid:7301\"]\ncluster_key = \"0123456789abcdef\"\n",
    );
    let unresolvable_line = unresolvable.lines().next().unwrap_or_default().to_owned();
    assert!(
        unresolvable_line.starts_with(
            "exchange: config [FILE]: discovery.seeds[0]: \"no-such-host.invalid:7301\""
        ),
        "{unresolvable}"
    );
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let in_use = with(&format!(
        "listen = \"127.0.0.1:{port}\"\ncluster_key = \"0123456789abcdef\"\n"
    ))
    .replace(&port.to_string(), "[PORT]");
    insta::assert_snapshot!([no_key, short_key, unspecified, no_port, in_use].join(""));
}
