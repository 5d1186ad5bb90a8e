//! The node's view of the cluster: the members, where to reach them, and
//! the ring they form.
//!
//! A node learns of the cluster from its seeds: every second (more often
//! while the view is still changing) it sends its member list to every seed
//! and every member it knows, and merges the list each answers with; a
//! node that receives a list merges it too. Lists only grow, so every node
//! converges on the union, and the ring, a pure function of that list, is
//! the same everywhere. Members are never dropped here: leaving the cluster,
//! failure detection and gossip of liveness come with later issues.
//!
//! The current view is an immutable [`View`] behind an `Arc`, swapped when
//! the member list changes, so readers take it without waiting.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::join::join_all;
use crate::ring::{Partitioner, Ring, key_hash};
use crate::rpc::{Member, Peers, Request, Response};
use crate::shutdown::Stop;
use crate::version::NodeId;

/// Exchange period once the view is settled.
const EXCHANGE_INTERVAL: Duration = Duration::from_secs(1);
/// Exchange period while the view has changed recently.
const EXCHANGE_INTERVAL_BUSY: Duration = Duration::from_millis(100);
/// How long after a change the exchange stays busy.
const SETTLE_TIME: Duration = Duration::from_secs(5);

/// One consistent picture of the cluster.
#[derive(Debug)]
pub struct View {
    /// Sorted by id.
    pub members: Vec<Member>,
    pub ring: Ring,
}

impl View {
    fn new(members: Vec<Member>, q: u32) -> Self {
        let ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
        Self { ring: Ring::new(&ids, q), members }
    }

    #[must_use]
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.binary_search_by_key(&id, |m| m.id).ok().map(|i| &self.members[i])
    }

    #[must_use]
    pub fn partitioner(&self) -> Partitioner {
        self.ring.partitioner()
    }

    /// The partition of `key` and its first `n` distinct owners.
    #[must_use]
    pub fn replicas_of(&self, key: &[u8], n: usize) -> (u32, Vec<&Member>) {
        self.replicas_at(key_hash(key), n)
    }

    /// The partition of ring position `hash` and its first `n` owners.
    #[must_use]
    pub fn replicas_at(&self, hash: u64, n: usize) -> (u32, Vec<&Member>) {
        let p = self.ring.partitioner().of(hash);
        (p, self.ring.replicas(p, n).iter().filter_map(|&id| self.member(id)).collect())
    }
}

pub struct Membership {
    me: Member,
    q: u32,
    seeds: Vec<String>,
    peers: Peers,
    view: RwLock<Arc<View>>,
    changed: RwLock<Instant>,
}

impl Membership {
    #[must_use]
    pub fn new(me: Member, q: u32, seeds: Vec<String>, peers: Peers) -> Self {
        let view = Arc::new(View::new(vec![me.clone()], q));
        Self { me, q, seeds, peers, view: RwLock::new(view), changed: RwLock::new(Instant::now()) }
    }

    /// The current view.
    #[must_use]
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Merges what a peer knows: new members are added, known ones take
    /// the addresses of their latest run, and a peer address names one node
    /// (a node that comes back under a new id, its data directory lost,
    /// replaces its old id rather than counting twice). Returns true if the
    /// view changed.
    pub fn learn(&self, members: &[Member]) -> bool {
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        let mut list = view.members.clone();
        let mut changed = false;
        for m in members {
            if let Some(i) = list.iter().position(|x| x.peer_addr == m.peer_addr && x.id != m.id) {
                if m.epoch <= list[i].epoch || list[i].id == self.me.id {
                    continue;
                }
                tracing::warn!(old = %list[i].id, new = %m.id, addr = %m.peer_addr, "a node came back under a new id; forgetting the old one");
                list.remove(i);
                changed = true;
            }
            match list.binary_search_by_key(&m.id, |x| x.id) {
                Ok(i) if m.id != self.me.id && m.epoch > list[i].epoch => {
                    list[i] = m.clone();
                    changed = true;
                }
                Ok(_) => {}
                Err(i) => {
                    list.insert(i, m.clone());
                    changed = true;
                }
            }
        }
        if changed {
            let names: Vec<String> = list.iter().map(|m| format!("{} at {}", m.id, m.client_addr)).collect();
            tracing::info!(members = list.len(), "cluster view changed: {}", names.join(", "));
            *view = Arc::new(View::new(list, self.q));
            *self.changed.write().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
        changed
    }

    /// Exchanges member lists with every seed and member until stopped.
    pub async fn run(self: Arc<Self>, mut stop: Stop) {
        let mut unreachable = HashSet::new();
        loop {
            self.exchange(&mut unreachable).await;
            let busy = self.changed.read().unwrap_or_else(PoisonError::into_inner).elapsed() < SETTLE_TIME;
            let pause = if busy { EXCHANGE_INTERVAL_BUSY } else { EXCHANGE_INTERVAL };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.stopped() => return,
            }
        }
    }

    /// One round: send our list to everyone we know of, merge the answers.
    /// Logs when a peer stops or starts answering (`unreachable` holds the
    /// addresses that did not answer the last round), so an operator sees
    /// why requests answer NOQUORUM.
    async fn exchange(&self, unreachable: &mut HashSet<String>) {
        let view = self.view();
        let mut targets: Vec<String> = self.seeds.clone();
        targets.extend(view.members.iter().map(|m| m.peer_addr.clone()));
        targets.sort();
        targets.dedup();
        targets.retain(|a| *a != self.me.peer_addr);
        let request = Request::Members(view.members.clone());
        let calls = targets.iter().map(|addr| self.peers.call(addr, &request)).collect();
        for (addr, answer) in targets.iter().zip(join_all(calls).await) {
            match answer {
                Ok(Response::Members(list)) => {
                    self.learn(&list);
                    if unreachable.remove(addr) {
                        tracing::info!(peer = %addr, "peer answering again");
                    }
                }
                Ok(other) => tracing::warn!(peer = %addr, "unexpected answer to a member exchange: {other:?}"),
                Err(e) => {
                    if unreachable.insert(addr.clone()) {
                        tracing::warn!(peer = %addr, "peer not answering: {e}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown;

    fn member(id: u64, port: u16, epoch: u64) -> Member {
        Member {
            id: NodeId(id),
            client_addr: format!("127.0.0.1:{port}"),
            peer_addr: format!("127.0.0.1:{}", port + 10_000),
            epoch,
        }
    }

    fn membership(me: Member) -> Membership {
        let (_, stop) = shutdown::signal();
        let peers = Peers::new(me.clone(), Duration::from_millis(100), 1 << 20, stop);
        Membership::new(me, 16, vec![], peers)
    }

    #[test]
    fn lists_merge_by_union_and_latest_addresses_win() {
        let m = membership(member(2, 7002, 5));
        assert!(m.learn(&[member(1, 7001, 5), member(3, 7003, 5)]));
        assert!(!m.learn(&[member(1, 7001, 5)]), "nothing new");
        assert!(!m.learn(&[member(1, 7101, 4)]), "an older run does not win");
        assert!(m.learn(&[member(1, 7201, 6)]), "a newer run does");
        assert!(!m.learn(&[member(2, 9999, 99)]), "nobody else decides where this node is");
        let view = m.view();
        let ids: Vec<u64> = view.members.iter().map(|m| m.id.0).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(view.member(NodeId(1)).map(|m| m.client_addr.as_str()), Some("127.0.0.1:7201"));
        assert_eq!(view.ring.owned_by(NodeId(2)), 5);
        let (_, replicas) = view.replicas_of(b"some key", 3);
        assert_eq!(replicas.len(), 3);
    }

    #[test]
    fn a_new_id_at_a_known_address_replaces_the_old_one() {
        let m = membership(member(2, 7002, 5));
        m.learn(&[member(1, 7001, 5), member(3, 7003, 5)]);
        assert!(m.learn(&[member(9, 7003, 8)]), "node 3 came back as 9");
        assert!(!m.learn(&[member(3, 7003, 5)]), "a stale list does not bring the old id back");
        assert!(!m.learn(&[member(7, 7002, 99)]), "nobody takes this node's address from it");
        let ids: Vec<u64> = m.view().members.iter().map(|m| m.id.0).collect();
        assert_eq!(ids, [1, 2, 9]);
    }
}
