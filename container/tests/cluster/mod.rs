//! Starting `exchange run` processes for tests: configs in a temp dir, `ipc://`
//! endpoints (no port races), bounded waits, every child stopped by its pid.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use exchange_idl::exchange::v1::control::NodeStatus;

/// One of the example app's components, as a node of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: &'static str,
    pub kind: &'static str,
    pub id: u64,
    pub handles: &'static [&'static str],
    pub subscribes: &'static [&'static str],
    /// `[component.settings]` lines.
    pub settings: &'static str,
}

const POSTED: &[&str] = &["feed.posted"];

pub const STORE: Member = Member {
    name: "store",
    kind: "store",
    id: 1,
    handles: &["kv.get", "kv.put", "kv.subscribe"],
    subscribes: &[],
    settings: "",
};
pub const FEED: Member = Member {
    name: "feed",
    kind: "feed",
    id: 2,
    handles: &["feed.post", "feed.follow", "feed.timeline"],
    subscribes: &[],
    settings: "",
};
pub const LOADGEN: Member = Member {
    name: "loadgen",
    kind: "loadgen",
    id: 3,
    handles: &[],
    subscribes: POSTED,
    settings: "",
};
/// Load generators that only watch new posts (no load, no timelines).
const WATCHING: &str = "ops_per_tick = 0\nwatch_timelines = false\n";
pub const WATCHER_A: Member = Member {
    name: "watcher-a",
    kind: "loadgen",
    id: 4,
    handles: &[],
    subscribes: POSTED,
    settings: WATCHING,
};
pub const WATCHER_B: Member = Member {
    name: "watcher-b",
    kind: "loadgen",
    id: 5,
    handles: &[],
    subscribes: POSTED,
    settings: WATCHING,
};
pub const WATCHER_C: Member = Member {
    name: "watcher-c",
    kind: "loadgen",
    id: 6,
    handles: &[],
    subscribes: POSTED,
    settings: WATCHING,
};
pub const APP: [Member; 3] = [STORE, FEED, LOADGEN];

/// Process tests run one at a time: several clusters at once on a small machine
/// starve each other and measure the machine, not the containers.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Cluster {
    _turn: std::sync::MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    members: Vec<Member>,
    children: Vec<(Member, Child)>,
    /// Loopback TCP ports (app, control) per member id, when not on ipc.
    tcp_ports: Option<Vec<(u64, u16, u16)>>,
    /// With discovery instead of static peers: each member's UDP port, and
    /// the members each announces itself to.
    discovery: Option<Vec<(u64, u16)>>,
    seeds: Vec<Member>,
}

/// A loopback UDP port nothing is bound to right now.
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a free port");
    socket.local_addr().expect("bound").port()
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

impl Cluster {
    /// A cluster of the example app's three components.
    pub fn new() -> Cluster {
        Cluster::of(&APP)
    }

    /// A cluster of `members`: each is configured with all the others as peers.
    pub fn of(members: &[Member]) -> Cluster {
        // A test that panicked while holding the lock poisons it; the lock only
        // orders tests, so the next one goes ahead.
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Cluster {
            _turn: turn,
            dir: tempfile::tempdir().expect("a temp dir"),
            members: members.to_vec(),
            children: Vec::new(),
            tcp_ports: None,
            discovery: None,
            seeds: Vec::new(),
        }
    }

    /// A cluster whose members find each other through discovery, announcing
    /// themselves to `seeds` (no static peers).
    pub fn discovering(members: &[Member], seeds: &[Member]) -> Cluster {
        let mut cluster = Cluster::of_tcp(members);
        cluster.discovery = Some(members.iter().map(|m| (m.id, free_udp_port())).collect());
        cluster.seeds = seeds.to_vec();
        cluster
    }

    /// Announce to `seeds` from now on (for members started later).
    pub fn set_seeds(&mut self, seeds: &[Member]) {
        self.seeds = seeds.to_vec();
    }

    /// The member's discovery address.
    pub fn discovery_addr(&self, member: Member) -> String {
        let ports = self.discovery.as_ref().expect("a discovering cluster");
        let (_, port) = ports
            .iter()
            .find(|(id, _)| *id == member.id)
            .expect("a member of the cluster");
        format!("127.0.0.1:{port}")
    }

    /// The same over loopback TCP instead of ipc.
    pub fn of_tcp(members: &[Member]) -> Cluster {
        let mut cluster = Cluster::of(members);
        cluster.tcp_ports = Some(
            members
                .iter()
                .map(|m| (m.id, free_port(), free_port()))
                .collect(),
        );
        cluster
    }

    fn ports(&self, member: Member) -> Option<(u16, u16)> {
        let ports = self.tcp_ports.as_ref()?;
        ports
            .iter()
            .find(|(id, _, _)| *id == member.id)
            .map(|(_, app, control)| (*app, *control))
    }

    pub fn app_endpoint(&self, member: Member) -> String {
        match self.ports(member) {
            Some((app, _)) => format!("tcp://127.0.0.1:{app}"),
            None => format!("ipc://{}/{}.app", self.dir.path().display(), member.name),
        }
    }

    pub fn control_endpoint(&self, member: Member) -> String {
        match self.ports(member) {
            Some((_, control)) => format!("tcp://127.0.0.1:{control}"),
            None => format!("ipc://{}/{}.ctl", self.dir.path().display(), member.name),
        }
    }

    /// Writes `member`'s config (with `extra` TOML appended) and returns its path.
    pub fn config(&self, member: Member, extra: &str) -> PathBuf {
        let mut toml = format!(
            "seed = {id}\n[run]\nnode_id = {id}\nlisten = {listen:?}\ncontrol = {control:?}\ndrain = \"500ms\"\nlinger = \"100ms\"\n\n[[component]]\nname = {name:?}\nkind = {kind:?}\n[component.settings]\n{settings}\n",
            id = member.id,
            listen = self.app_endpoint(member),
            control = self.control_endpoint(member),
            name = member.name,
            kind = member.kind,
            settings = member.settings,
        );
        toml.push_str(extra);
        if self.discovery.is_some() {
            let seeds: Vec<String> = self.seeds.iter().map(|s| self.discovery_addr(*s)).collect();
            toml.push_str(&format!(
                "\n[discovery]\nlisten = {:?}\nseeds = {seeds:?}\ncluster_key = \"test-cluster-key-0123456789\"\nprobe_period = \"200ms\"\n",
                self.discovery_addr(member),
            ));
            let path = self
                .dir
                .path()
                .join(format!("{}-n{}.toml", member.name, member.id));
            std::fs::write(&path, toml).expect("config written");
            return path;
        }
        for peer in self.members.iter().filter(|peer| **peer != member) {
            toml.push_str(&format!(
                "\n[[peer]]\nnode_id = {}\nendpoint = {:?}\nhandles = {:?}\nsubscribes = {:?}\n",
                peer.id,
                self.app_endpoint(*peer),
                peer.handles,
                peer.subscribes,
            ));
        }
        let path = self
            .dir
            .path()
            .join(format!("{}-n{}.toml", member.name, member.id));
        std::fs::write(&path, toml).expect("config written");
        path
    }

    /// Starts `member` with `extra` config.
    pub fn start(&mut self, member: Member, extra: &str) {
        self.start_with_env(member, extra, &[]);
    }

    /// Starts `member` with `extra` config and environment variables (such as
    /// `EXCHANGE__RUN__…` overrides).
    pub fn start_with_env(&mut self, member: Member, extra: &str, env: &[(&str, &str)]) {
        self.start_with(member, extra, env, &[]);
    }

    /// Starts `member` with `extra` config, environment variables and more
    /// arguments to `exchange run`.
    pub fn start_with(&mut self, member: Member, extra: &str, env: &[(&str, &str)], args: &[&str]) {
        let config = self.config(member, extra);
        let child = Command::new(env!("CARGO_BIN_EXE_exchange"))
            .args(["run", "--config", config.to_str().expect("utf-8 path")])
            .args(args)
            .env_remove("EXCHANGE_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("exchange run starts");
        self.children.push((member, child));
    }

    /// The member's status, once it answers (within 5 s).
    pub fn status(&self, member: Member) -> NodeStatus {
        let endpoint = self.control_endpoint(member);
        let started = Instant::now();
        loop {
            match exchange_container::status::fetch(&endpoint, Duration::from_millis(500)) {
                Ok(status) => return status,
                Err(error) if started.elapsed() > Duration::from_secs(5) => {
                    panic!("{}: {error}", member.name)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits (at most `timeout`) until `ready` holds for the member's status.
    pub fn wait_for(
        &self,
        member: Member,
        timeout: Duration,
        ready: impl Fn(&NodeStatus) -> bool,
    ) -> NodeStatus {
        let started = Instant::now();
        loop {
            let status = self.status(member);
            if ready(&status) {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "{} not ready within {timeout:?}: {status:?}",
                member.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills `member` with SIGKILL (no drain, no goodbye), by its pid.
    pub fn kill(&mut self, member: Member) {
        let index = self
            .children
            .iter()
            .position(|(m, _)| *m == member)
            .expect("member is running");
        let (_, mut child) = self.children.remove(index);
        let sent = Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let _ = child.wait();
    }

    /// Sends SIGTERM to `member` and waits (at most `within`) for it to exit;
    /// returns its exit status, stdout and how long it took.
    pub fn terminate(
        &mut self,
        member: Member,
        within: Duration,
    ) -> (ExitStatus, String, Duration) {
        let index = self
            .children
            .iter()
            .position(|(m, _)| *m == member)
            .expect("member is running");
        let (_, mut child) = self.children.remove(index);
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                let output = child.wait_with_output().expect("child output");
                if !status.success() {
                    // Shown with the failing test's output.
                    println!(
                        "{} exited with {status}; its stderr:\n{}",
                        member.name,
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                return (
                    status,
                    String::from_utf8_lossy(&output.stdout).into_owned(),
                    started.elapsed(),
                );
            }
            if started.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {within:?} of SIGTERM", member.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sums a reason map.
pub fn total(counts: &std::collections::BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}
