//! The libzmq we build has CURVE: `zmq::has("curve")`, key generation, and a
//! CURVE-encrypted round trip over loopback TCP, with a wrong server key refused.

use std::time::Duration;

fn curve_pair(
    context: &zmq::Context,
    server_keys: &zmq::CurveKeyPair,
    client_server_key: &[u8],
) -> (zmq::Socket, zmq::Socket) {
    let server = context.socket(zmq::REP).unwrap();
    server.set_curve_server(true).unwrap();
    server.set_curve_secretkey(&server_keys.secret_key).unwrap();
    server.set_linger(0).unwrap();
    server.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = server.get_last_endpoint().unwrap().unwrap();

    let client_keys = zmq::CurveKeyPair::new().unwrap();
    let client = context.socket(zmq::REQ).unwrap();
    client.set_curve_serverkey(client_server_key).unwrap();
    client.set_curve_publickey(&client_keys.public_key).unwrap();
    client.set_curve_secretkey(&client_keys.secret_key).unwrap();
    client.set_linger(0).unwrap();
    client.set_rcvtimeo(2_000).unwrap();
    client.connect(&endpoint).unwrap();
    (server, client)
}

#[test]
fn libzmq_is_4_3_5_with_curve() {
    assert_eq!(zmq::version(), (4, 3, 5));
    assert!(zmq::has("curve").unwrap(), "libzmq was built without CURVE");
}

#[test]
fn a_curve_round_trip_works_and_a_wrong_server_key_does_not() {
    let context = zmq::Context::new();
    let server_keys = zmq::CurveKeyPair::new().unwrap();

    let (server, client) = curve_pair(&context, &server_keys, &server_keys.public_key);
    client.send("ping", 0).unwrap();
    server.set_rcvtimeo(2_000).unwrap();
    assert_eq!(server.recv_bytes(0).unwrap(), b"ping");
    server.send("pong", 0).unwrap();
    assert_eq!(client.recv_bytes(0).unwrap(), b"pong");
    assert_eq!(server.get_mechanism().unwrap(), zmq::Mechanism::ZMQ_CURVE);

    // A client that trusts another server key never completes the handshake.
    let other = zmq::CurveKeyPair::new().unwrap();
    let (server, client) = curve_pair(&context, &server_keys, &other.public_key);
    client.send("ping", 0).unwrap();
    server.set_rcvtimeo(300).unwrap();
    assert_eq!(server.recv_bytes(0), Err(zmq::Error::EAGAIN));
    std::thread::sleep(Duration::from_millis(10));
}
