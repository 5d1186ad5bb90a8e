//! An in-process test cluster: several shoal nodes started through the
//! library on one background tokio runtime, each on ephemeral loopback
//! ports with its own temporary data directory, driven by real clients
//! from the test thread. Nodes can be stopped and restarted on the same
//! directory and ports.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;
use shoal::config::Config;
use shoal::node::Node;
use shoal::rpc::Fault;

use super::reply::{int, members, text};
use super::wait_for;

pub struct TestCluster {
    rt: tokio::runtime::Runtime,
    nodes: Vec<Option<Node>>,
    configs: Vec<Config>,
    _temp: tempfile::TempDir,
}

/// The members a node sees and those in its ring, if the ring is settled
/// (no change staged or in progress), with its epoch; `None` if it does
/// not answer.
pub fn members_seen(port: u16) -> Option<(usize, Option<(usize, u64)>)> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
    let info: String = redis::cmd("INFO").arg("cluster").query(&mut c).ok()?;
    let field = |name: &str| -> Option<u64> {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).and_then(|n| n.trim().parse().ok())
    };
    let members = usize::try_from(field("shoal_members")?).ok()?;
    if info.lines().any(|l| l.trim_end() == "shoal_cluster_id:") {
        // In no cluster yet (its seeds are not there): no ring to wait for.
        return Some((members, Some((members, 0))));
    }
    let settled = field("shoal_ring_change")? == 0 && field("shoal_ring_staged")? == 0;
    let ring =
        settled.then(|| (field("shoal_ring_members").unwrap_or(0) as usize, field("shoal_ring_epoch").unwrap_or(0)));
    Some((members, ring))
}

impl TestCluster {
    /// Starts `size` nodes with the given N, R, W and waits until every node
    /// sees every other.
    pub fn start(size: usize, n: usize, r: usize, w: usize) -> Self {
        Self::start_with(size, |c| {
            c.n = Some(n);
            c.r = Some(r);
            c.w = Some(w);
        })
    }

    /// Starts `size` nodes, letting `tune` adjust each one's settings.
    pub fn start_with(size: usize, tune: impl Fn(&mut Config)) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let temp = tempfile::tempdir().expect("temp dir");
        let mut cluster = Self { rt, nodes: Vec::new(), configs: Vec::new(), _temp: temp };
        for i in 0..size {
            let mut config = Config {
                port: 0,
                peer_port: Some(0),
                data_dir: cluster._temp.path().join(format!("node{i}")),
                partitions: 64,
                request_timeout: 500,
                // Fast gossip: members and failures are seen in a fraction
                // of the default's time.
                gossip_interval: 100,
                shutdown_timeout: 5,
                // Anti-entropy would repair what tests of reads and hints
                // look at; the tests of anti-entropy turn it on.
                anti_entropy_interval: 0,
                // Every node after the first joins through the first.
                seeds: cluster
                    .configs
                    .first()
                    .map(|c: &Config| vec![format!("127.0.0.1:{}", c.peer_port())])
                    .unwrap_or_default(),
                ..Config::default()
            };
            tune(&mut config);
            let node = cluster.rt.block_on(Node::start(config.clone())).expect("node starts");
            // Later restarts keep the same ports.
            config.port = node.addr.port();
            config.peer_port = Some(node.peer_addr.port());
            cluster.configs.push(config);
            cluster.nodes.push(Some(node));
        }
        // The first node rejoins through any of the others after a restart.
        let others: Vec<String> =
            cluster.configs.iter().skip(1).map(|c| format!("127.0.0.1:{}", c.peer_port())).collect();
        cluster.configs[0].seeds = others;
        cluster.wait_converged();
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Starts one more node, joining through the first, with the first
    /// node's settings (its own directory and ports); returns its index.
    /// The ring then changes on every node.
    pub fn add(&mut self) -> usize {
        self.add_with(|_| {})
    }

    /// As [`add`](Self::add), with the new node's settings changed by
    /// `tune`.
    pub fn add_with(&mut self, tune: impl FnOnce(&mut Config)) -> usize {
        let i = self.nodes.len();
        let mut config = Config {
            port: 0,
            peer_port: Some(0),
            data_dir: self._temp.path().join(format!("node{i}")),
            seeds: vec![self.peer_addr(0)],
            ..self.configs[0].clone()
        };
        tune(&mut config);
        let node = self.rt.block_on(Node::start(config.clone())).expect("node starts");
        config.port = node.addr.port();
        config.peer_port = Some(node.peer_addr.port());
        self.configs.push(config);
        self.nodes.push(Some(node));
        i
    }

    /// Waits until every running node sees every node as a member, and
    /// holds the same settled ring of them all (every join done).
    pub fn wait_converged(&self) {
        let size = self.nodes.len();
        let running: Vec<u16> = (0..size).filter(|&i| self.nodes[i].is_some()).map(|i| self.port(i)).collect();
        wait_for(&format!("every node to see {size} members in one settled ring"), Duration::from_secs(30), || {
            let epochs: Vec<u64> = running
                .iter()
                .map(|&port| match members_seen(port)? {
                    (n, Some((ring, epoch))) if n == size && ring == size => Some(epoch),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            epochs.windows(2).all(|w| w[0] == w[1]).then_some(())
        });
    }

    /// Waits until every running node sees every member up (its failure
    /// detector has heard from each since it started or came back).
    #[track_caller]
    /// Waits until every running node sees every member up, each running
    /// one in its current run (the version it gives itself).
    pub fn wait_all_up(&self, within: Duration) {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
        let mut current = std::collections::HashMap::new();
        for &i in &running {
            let me = members(&mut self.client(i)).into_iter().find(|m| int(&m["self"]) == 1).expect("self");
            current.insert(text(&me["id"]), int(&me["version"]));
        }
        for &i in &running {
            let mut c = self.client(i);
            wait_for(&format!("node {i} to see every member up"), within, || {
                let all = members(&mut c);
                let seen =
                    |m: &HashMap<String, Value>| current.get(&text(&m["id"])).is_none_or(|&v| int(&m["version"]) == v);
                (all.len() == self.len() && all.iter().all(|m| int(&m["up"]) == 1 && seen(m))).then_some(())
            });
        }
    }

    pub fn port(&self, i: usize) -> u16 {
        self.configs[i].port
    }

    pub fn peer_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.configs[i].peer_port())
    }

    pub fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.port(i))
    }

    /// A RESP2 client of node `i`.
    pub fn client(&self, i: usize) -> redis::Connection {
        redis::Client::open(self.url(i)).expect("url").get_connection().expect("connect")
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.configs[i].data_dir.clone()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// Stops node `i` cleanly (its data stays).
    pub fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("running");
        self.rt.block_on(node.stop()).expect("clean stop");
    }

    /// Starts node `i` again on its directory and ports.
    pub fn restart(&mut self, i: usize) {
        self.restart_with(i, |_| {});
    }

    /// Starts node `i` again on its directory and ports, with its settings
    /// changed by `tune` from now on.
    pub fn restart_with(&mut self, i: usize, tune: impl FnOnce(&mut Config)) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        tune(&mut self.configs[i]);
        // The node's old ports are ephemeral ones: while it was stopped, a
        // connection of another test running alongside may have taken one
        // as its local port for a moment. Try again for a while then.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let node = loop {
            match self.rt.block_on(Node::start(self.configs[i].clone())) {
                Ok(node) => break node,
                Err(e) if e.to_string().contains("Address already in use") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("node restarts: {e}"),
            }
        };
        self.nodes[i] = Some(node);
    }

    /// From now on node `from`'s calls to node `to` are lost (they time
    /// out); `to`'s calls to `from` still go through.
    pub fn cut_one_way(&self, from: usize, to: usize) {
        if let Some(node) = &self.nodes[from] {
            node.faults().set(&self.peer_addr(to), Fault::Drop);
        }
    }

    /// Cuts nodes `a` and `b` off from each other, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Cuts node `i` off from every other node, both ways.
    pub fn isolate(&self, i: usize) {
        for j in (0..self.len()).filter(|&j| j != i) {
            self.cut(i, j);
        }
    }

    /// Lifts every cut.
    pub fn heal(&self) {
        for node in self.nodes.iter().flatten() {
            node.faults().heal();
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            let _ = self.rt.block_on(node.stop());
        }
    }
}
