//! Discovery across hosts: three containers in three network namespaces (one
//! address each, joined by a bridge), configured with one seed, find each other
//! over real UDP and serve the example app over real TCP between addresses.
//! Namespaces, veths and the bridge are created here and removed at the end;
//! where the kernel or the user may not create them, the test says so and skips.

mod cluster;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::*;

/// Runs `ip` with `args`; the error text if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Namespaces and links of one test, removed on drop (deleting a namespace
/// deletes the veth ends in it).
struct Hosts {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        for namespace in &self.namespaces {
            let _ = ip(&["netns", "del", namespace]);
        }
    }
}

/// A bridge namespace and `count` host namespaces on 10.77.0.0/24.
fn hosts(count: usize) -> Result<Hosts, String> {
    let tag = std::process::id() % 100_000;
    let bridge = format!("exb{tag}");
    let mut hosts = Hosts {
        namespaces: Vec::new(),
        children: Vec::new(),
    };
    ip(&["netns", "add", &bridge])?;
    hosts.namespaces.push(bridge.clone());
    ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
    for i in 1..=count {
        let host = format!("exh{tag}-{i}");
        ip(&["netns", "add", &host])?;
        hosts.namespaces.push(host.clone());
        let (inner, outer) = (format!("eh{tag}{i}"), format!("eb{tag}{i}"));
        ip(&[
            "link", "add", &inner, "type", "veth", "peer", "name", &outer,
        ])?;
        ip(&["link", "set", &inner, "netns", &host])?;
        ip(&["link", "set", &outer, "netns", &bridge])?;
        ip(&["-n", &bridge, "link", "set", &outer, "master", "br0"])?;
        ip(&["-n", &bridge, "link", "set", &outer, "up"])?;
        let address = format!("10.77.0.{i}/24");
        ip(&["-n", &host, "addr", "add", &address, "dev", &inner])?;
        ip(&["-n", &host, "link", "set", &inner, "up"])?;
        ip(&["-n", &host, "link", "set", "lo", "up"])?;
    }
    Ok(hosts)
}

#[test]
fn containers_on_separate_hosts_find_each_other_and_serve() {
    // The cluster harness only lends its one-at-a-time turn and a temp dir.
    let cluster = Cluster::of(&APP);
    let mut hosts = match hosts(3) {
        Ok(hosts) => hosts,
        Err(why) => {
            println!("SKIPPED: cannot create network namespaces here ({why})");
            return;
        }
    };
    let dir = cluster.dir.path();
    for (i, member) in APP.iter().enumerate() {
        let host = i + 1;
        let toml = format!(
            "seed = {id}\n[run]\nnode_id = {id}\nlisten = \"tcp://10.77.0.{host}:7101\"\ncontrol = \"ipc://{dir}/{name}.ctl\"\ndrain = \"500ms\"\nlinger = \"100ms\"\n\n[[component]]\nname = {name:?}\n\n[discovery]\nlisten = \"10.77.0.{host}:7301\"\nseeds = [\"10.77.0.1:7301\"]\ncluster_key = \"test-cluster-key-0123456789\"\nprobe_period = \"200ms\"\nhost = \"host{host}\"\n",
            id = member.id,
            name = member.name,
            dir = dir.display(),
        );
        let path = dir.join(format!("{}.toml", member.name));
        std::fs::write(&path, toml).unwrap();
        let namespace = hosts.namespaces[host].clone();
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace, env!("CARGO_BIN_EXE_exchange")])
            .args(["run", "--config", path.to_str().unwrap()])
            .env_remove("EXCHANGE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("exchange run starts in its namespace");
        hosts.children.push(child);
    }
    // Control sockets are ipc (a path in the shared file system), so this
    // process, outside the namespaces, can ask every container for its status.
    let status = |member: Member| {
        let endpoint = format!("ipc://{}/{}.ctl", dir.display(), member.name);
        exchange_container::status::fetch(&endpoint, Duration::from_millis(500))
    };
    let started = Instant::now();
    loop {
        let statuses: Vec<_> = APP.iter().map(|m| status(*m)).collect();
        let all_know_all = statuses.iter().all(|s| {
            s.as_ref()
                .is_ok_and(|s| s.discovery.as_ref().is_some_and(|d| d.members.len() == 2))
        });
        let replies = statuses[2]
            .as_ref()
            .map_or(0, |s| s.components[0].responses_received);
        if all_know_all && replies > 100 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not serving across hosts within 20 s: {statuses:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every datagram between the hosts was authentic and fresh.
    let store = status(STORE).unwrap();
    assert_eq!(store.discovery.unwrap().refused.values().sum::<u64>(), 0);
}
