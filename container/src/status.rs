//! `exchange status`: a control-plane client, and how a node's status is shown.

use std::fmt::Write as _;
use std::time::Duration;

use exchange_idl::exchange::v1::control;
use prost::Message as _;

/// Sends one control request to `endpoint` and waits up to `timeout` for
/// its answer. `Err` names the endpoint and what went wrong: no connection,
/// no answer in time, an answer that is not a control response.
pub fn call(
    endpoint: &str,
    timeout: Duration,
    request: &control::Request,
) -> Result<control::response::Kind, String> {
    let context = zmq::Context::new();
    let socket = context.socket(zmq::DEALER).map_err(|e| e.to_string())?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    socket.set_linger(0).map_err(|e| e.to_string())?;
    socket.set_rcvtimeo(timeout_ms).map_err(|e| e.to_string())?;
    socket.set_sndtimeo(timeout_ms).map_err(|e| e.to_string())?;
    socket
        .connect(endpoint)
        .map_err(|error| format!("cannot connect to {endpoint}: {error}"))?;
    socket
        .send(request.encode_to_vec(), 0)
        .map_err(|error| format!("cannot send to {endpoint}: {error}"))?;
    let reply = socket.recv_bytes(0).map_err(|_| {
        format!(
            "no answer from {endpoint} within {} (is the node up, and is this its control endpoint?)",
            humantime::format_duration(timeout)
        )
    })?;
    match control::Response::decode(reply.as_slice()) {
        Ok(control::Response { kind: Some(kind) }) => Ok(kind),
        Ok(_) | Err(_) => Err(format!(
            "{endpoint} answered something that is not a control response"
        )),
    }
}

/// Asks the container at `endpoint` for its status.
pub fn fetch(endpoint: &str, timeout: Duration) -> Result<control::NodeStatus, String> {
    let request = control::Request {
        kind: Some(control::request::Kind::Status(control::StatusRequest {})),
        client: "exchange status".into(),
        node: 0,
    };
    match call(endpoint, timeout, &request)? {
        control::response::Kind::Status(status) => Ok(status),
        control::response::Kind::Error(error) => {
            Err(format!("{endpoint} refused the request: {error}"))
        }
        _ => Err(format!(
            "{endpoint} answered a status request with something else"
        )),
    }
}

/// `exchange status`: prints the status and returns the exit code.
pub fn print(endpoint: &str, timeout: Duration, json: bool) -> i32 {
    match fetch(endpoint, timeout) {
        Ok(status) if json => {
            println!("{}", to_json(&status));
            0
        }
        Ok(status) => {
            print!("{}", render(&status));
            0
        }
        Err(error) => {
            eprintln!("exchange: {error}");
            1
        }
    }
}

/// A status as JSON: the control message, field for field (as
/// `exchangectl --json status` prints it).
pub fn to_json(status: &control::NodeStatus) -> serde_json::Value {
    serde_json::to_value(status).expect("control messages serialize")
}

/// A status as a table for people.
pub fn render(status: &control::NodeStatus) -> String {
    let mut out = format!(
        "node n{} ({}): {} frames in, {} out\n",
        status.node, status.name, status.frames_in, status.frames_out
    );
    let _ = writeln!(
        out,
        "{:<10} {:>10} {:>10} {:<24} {:<24} {:>6}",
        "component", "accepted", "handled", "bounced", "dropped", "queue"
    );
    let reasons = |counts: &std::collections::BTreeMap<String, u64>| {
        if counts.is_empty() {
            "-".to_owned()
        } else {
            counts
                .iter()
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    for c in &status.components {
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>10} {:<24} {:<24} {:>6}",
            c.name,
            c.accepted,
            c.handled,
            reasons(&c.bounced),
            reasons(&c.dropped),
            c.queue_len
        );
    }
    if !status.node_dropped.is_empty() || !status.node_bounced.is_empty() {
        let _ = writeln!(
            out,
            "refused by the node: dropped {} bounced {}",
            reasons(&status.node_dropped),
            reasons(&status.node_bounced)
        );
    }
    if let Some(d) = &status.discovery {
        let members: Vec<String> = d.members.iter().map(|n| format!("n{n}")).collect();
        let _ = writeln!(
            out,
            "discovery: {} members [{}]; {} datagrams in, {} out; refused {}; malformed {}",
            d.members.len(),
            members.join(" "),
            d.datagrams_in,
            d.datagrams_out,
            reasons(
                &d.refused
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(r, n)| (r.clone(), *n))
                    .collect()
            ),
            d.malformed
        );
        if d.swim_errors > 0 || d.unadvertised > 0 {
            let _ = writeln!(
                out,
                "discovery: {} requests refused by SWIM (a bug: please report); {} subscriptions not advertised (metadata full)",
                d.swim_errors, d.unadvertised
            );
        }
    }
    out
}
