//! The member table: what this node knows of every member, and the
//! arithmetic of gossip over it. Pure: no I/O, no clock.
//!
//! Each member is known by its [`Entry`] (what it says of itself, ordered
//! by `version`, which only the member raises) and its latest [`Beat`]
//! (a heartbeat that rises every round, plus its load). A member's state is
//! thus ordered by `(version, heartbeat)`, and merging keeps the larger:
//! merging is commutative, associative and idempotent, so every node that
//! hears the same things ends with the same table, whatever the order.
//!
//! A gossip round between two nodes is push-pull in three messages: the
//! initiator sends its digest (`(id, version, heartbeat)` per member); the
//! other answers with the deltas the initiator lacks ([`Table::compare`])
//! and the ids it wants itself; the initiator applies those and sends the
//! wanted deltas. Only what differs travels besides the digest: full
//! entries only where the other side's version is older, beats otherwise.
//!
//! Removal is final: a removed member stays in the table as a tombstone
//! (version `u64::MAX`), so stale gossip cannot bring it back. A member
//! that replaces another (a node back at the same address with a wiped
//! disk) removes it wherever its entry arrives.
//!
//! What peers send is checked before it is merged, since any peer that
//! passed the handshake may send anything: the table holds at most
//! [`MAX_MEMBERS`] members (tombstones included; a new one is refused when
//! it is full), and an entry is taken only if a member could have
//! announced it ([`plausible`]): a tombstone carries the tombstone version
//! and nothing else does, a live entry's version is at most
//! [`MAX_VERSION`], its addresses are `host:port`. A member may replace
//! only the member last known at its own peer address, and nobody replaces
//! or announces this node but itself. Gossip carries no proof of who wrote
//! an entry, so a peer of the cluster can still announce made-up members
//! that look real; those are bounded, not detected.

use std::collections::BTreeMap;

use crate::rpc::{Beat, Delta, DigestItem, Entry, MAX_MEMBERS, Status, valid_addr};
use crate::version::NodeId;

/// The version a removal tombstone carries: above any real version.
pub const REMOVED: u64 = u64::MAX;
/// The highest version a live entry may carry. Versions are the clock's
/// milliseconds at a member's start, raised by one past any claim of its
/// entry seen elsewhere: 2^62 ms is some 146 million years, so a version
/// above it is a forgery. It is refused, and never moved past, which would
/// walk this node's version up to the tombstone's.
pub const MAX_VERSION: u64 = 1 << 62;

/// One member as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub entry: Entry,
    pub beat: Beat,
}

/// What applying deltas changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries were added or changed (the view and the saved table follow).
    pub entries_changed: bool,
    /// The entries added or changed, as they now are.
    pub changed: Vec<Entry>,
    /// Members whose heartbeat rose: they are alive.
    pub heard: Vec<NodeId>,
    /// A version of this node's own entry newer than its own: another
    /// process announced this node (a restored copy of its data), and it
    /// must move past that version.
    pub own_version_seen: Option<u64>,
    /// Entries not taken: implausible ones, and new members when the table
    /// is full.
    pub refused: usize,
}

/// Whether `e` is an entry a member could have announced (see the module
/// docs): a tombstone at the tombstone version, its addresses empty or
/// `host:port`; a live entry at a version up to [`MAX_VERSION`], with both
/// addresses `host:port`.
#[must_use]
pub fn plausible(e: &Entry) -> bool {
    let removed = e.status == Status::Removed;
    let addr = |a: &str| valid_addr(a) || (removed && a.is_empty());
    let version = if removed { e.version == REMOVED } else { e.version <= MAX_VERSION };
    version && addr(&e.client_addr) && addr(&e.peer_addr)
}

/// This node's view of every member.
#[derive(Clone, Debug)]
pub struct Table {
    me: NodeId,
    members: BTreeMap<NodeId, Known>,
}

impl Table {
    /// A table holding this node only.
    #[must_use]
    pub fn new(me: Entry) -> Self {
        let id = me.id;
        let mut members = BTreeMap::new();
        members.insert(id, Known { entry: me, beat: Beat { heartbeat: 1, ..Beat::default() } });
        Self { me: id, members }
    }

    #[must_use]
    pub fn me(&self) -> &Known {
        &self.members[&self.me]
    }

    #[must_use]
    pub fn get(&self, id: NodeId) -> Option<&Known> {
        self.members.get(&id)
    }

    /// Every member, removed ones included, by id.
    pub fn all(&self) -> impl Iterator<Item = &Known> {
        self.members.values()
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Raises this node's heartbeat and records its load and the epoch of
    /// the ring it holds.
    pub fn beat(&mut self, keys: u64, bytes: u64, ring_epoch: u64) {
        if let Some(me) = self.members.get_mut(&self.me) {
            me.beat = Beat { heartbeat: me.beat.heartbeat + 1, keys, bytes, ring_epoch };
        }
    }

    /// Changes this node's own entry to `entry` (whose version must be
    /// higher): a restart, new addresses, a new status. Its heartbeat
    /// starts again.
    pub fn set_me(&mut self, entry: Entry) {
        debug_assert_eq!(entry.id, self.me);
        if let Some(old) = entry.replaces.filter(|old| *old != self.me) {
            self.remove(old);
        }
        let beat = Beat { heartbeat: 1, ..self.me().beat };
        self.members.insert(self.me, Known { entry, beat });
    }

    /// Adds entries learned out of band (a saved table, a seed's answer to
    /// a join): as deltas with no beat.
    pub fn learn(&mut self, entries: Vec<Entry>) -> Applied {
        let deltas = entries
            .into_iter()
            .map(|entry| Delta { id: entry.id, version: entry.version, entry: Some(entry), beat: Beat::default() })
            .collect();
        self.apply(deltas)
    }

    /// The digest of the table: how far this node knows each member.
    #[must_use]
    pub fn digest(&self) -> Vec<DigestItem> {
        self.members
            .values()
            .map(|k| DigestItem { id: k.entry.id, version: k.entry.version, heartbeat: k.beat.heartbeat })
            .collect()
    }

    /// Whether what a peer knows of this node's own entry (its `version`,
    /// `heartbeat` and maybe the entry) comes from another process: a newer
    /// version, or this version with a heartbeat ahead of this node's or a
    /// different entry (a restored copy of this node's data announced the
    /// same version). Returns the version to move past. A version above
    /// [`MAX_VERSION`] is a forgery, not another process, and is ignored.
    #[must_use]
    pub fn another_self(&self, version: u64, heartbeat: u64, entry: Option<&Entry>) -> Option<u64> {
        if version >= MAX_VERSION {
            return None;
        }
        let me = self.me();
        let newer = version > me.entry.version;
        let same_version_elsewhere =
            version == me.entry.version && (heartbeat > me.beat.heartbeat || entry.is_some_and(|e| *e != me.entry));
        (newer || same_version_elsewhere).then_some(version)
    }

    /// What a peer's digest says of this node, if it is another process's
    /// (see [`another_self`](Self::another_self)).
    #[must_use]
    pub fn another_self_in(&self, digest: &[DigestItem]) -> Option<u64> {
        digest.iter().filter(|d| d.id == self.me).find_map(|d| self.another_self(d.version, d.heartbeat, None))
    }

    /// Against a peer's digest: the deltas the peer lacks, and the ids of
    /// members the peer knows better. One pass over both, in id order.
    #[must_use]
    pub fn compare(&self, digest: &[DigestItem]) -> (Vec<Delta>, Vec<NodeId>) {
        let mut sorted;
        let digest = if digest.is_sorted_by_key(|d| d.id) {
            digest
        } else {
            sorted = digest.to_vec();
            sorted.sort_by_key(|d| d.id);
            &sorted[..]
        };
        let (mut deltas, mut wants) = (Vec::new(), Vec::new());
        let mut theirs = digest.iter().peekable();
        for known in self.members.values() {
            let id = known.entry.id;
            while let Some(d) = theirs.next_if(|d| d.id < id) {
                wants.push(d.id);
            }
            let mine = (known.entry.version, known.beat.heartbeat);
            match theirs.next_if(|d| d.id == id) {
                None => deltas.push(self.delta(known, true)),
                Some(d) if (d.version, d.heartbeat) > mine => wants.push(id),
                Some(d) if (d.version, d.heartbeat) < mine => deltas.push(self.delta(known, d.version < mine.0)),
                Some(_) => {}
            }
        }
        wants.extend(theirs.map(|d| d.id));
        wants.dedup();
        (deltas, wants)
    }

    fn delta(&self, known: &Known, with_entry: bool) -> Delta {
        Delta {
            id: known.entry.id,
            version: known.entry.version,
            entry: with_entry.then(|| known.entry.clone()),
            beat: known.beat,
        }
    }

    /// The deltas of the members `ids`, entries included.
    #[must_use]
    pub fn deltas(&self, ids: &[NodeId]) -> Vec<Delta> {
        ids.iter().filter_map(|id| self.members.get(id)).map(|k| self.delta(k, true)).collect()
    }

    /// Merges what a peer sent: newer entries replace older ones, newer
    /// heartbeats older ones; this node's own entry is never replaced.
    /// Implausible entries, and new members past [`MAX_MEMBERS`], are
    /// refused.
    pub fn apply(&mut self, deltas: Vec<Delta>) -> Applied {
        let mut applied = Applied::default();
        for delta in deltas {
            if delta.id == self.me {
                if let Some(seen) = self.another_self(delta.version, delta.beat.heartbeat, delta.entry.as_ref()) {
                    applied.own_version_seen = Some(applied.own_version_seen.unwrap_or(0).max(seen));
                }
                continue;
            }
            let current = self.members.get(&delta.id).map(|k| (k.entry.version, k.beat.heartbeat));
            match current {
                Some((version, _)) if delta.version > version => self.take(delta, &mut applied),
                Some((version, heartbeat)) if delta.version == version && delta.beat.heartbeat > heartbeat => {
                    if let Some(k) = self.members.get_mut(&delta.id) {
                        k.beat = delta.beat;
                        applied.heard.push(delta.id);
                    }
                }
                Some(_) => {}
                None if self.members.len() >= MAX_MEMBERS => applied.refused += usize::from(delta.entry.is_some()),
                None => self.take(delta, &mut applied),
            }
        }
        applied
    }

    /// Puts a delta's entry in place if it is whole (the delta's own id and
    /// version) and [`plausible`].
    fn take(&mut self, delta: Delta, applied: &mut Applied) {
        let Some(entry) = delta.entry else { return };
        if entry.id == delta.id && entry.version == delta.version && plausible(&entry) {
            self.replace(entry, delta.beat, applied);
        } else {
            applied.refused += 1;
        }
    }

    /// Puts `entry` in place, removing what it replaces if that was at the
    /// same peer address (a node back where it was, with a new id), or is
    /// not known here yet.
    fn replace(&mut self, entry: Entry, beat: Beat, applied: &mut Applied) {
        let id = entry.id;
        let replaceable = |old: &NodeId| {
            *old != id
                && self
                    .members
                    .get(old)
                    .is_none_or(|k| k.entry.status == Status::Removed || k.entry.peer_addr == entry.peer_addr)
        };
        if let Some(old) = entry.replaces.filter(replaceable) {
            self.remove(old);
        }
        let heard = beat.heartbeat > 0 && entry.status != Status::Removed;
        applied.changed.push(entry.clone());
        self.members.insert(id, Known { entry, beat });
        applied.entries_changed = true;
        if heard {
            applied.heard.push(id);
        }
    }

    /// Marks `id` removed for good (a tombstone no gossip can undo). This
    /// node cannot remove itself here, and a member not known yet is
    /// remembered as removed only while the table has room.
    pub fn remove(&mut self, id: NodeId) {
        if id == self.me {
            return;
        }
        let entry = match self.members.get(&id) {
            Some(k) => Entry { status: Status::Removed, version: REMOVED, replaces: None, ..k.entry.clone() },
            None if self.members.len() >= MAX_MEMBERS => return,
            None => Entry {
                id,
                client_addr: String::new(),
                peer_addr: String::new(),
                status: Status::Removed,
                version: REMOVED,
                replaces: None,
            },
        };
        self.members.insert(id, Known { entry, beat: Beat::default() });
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(id: u64, version: u64) -> Entry {
        Entry {
            id: NodeId(id),
            client_addr: format!("127.0.0.1:{}", 6000 + id),
            peer_addr: format!("127.0.0.1:{}", 16000 + id),
            status: Status::Valid,
            version,
            replaces: None,
        }
    }

    /// One push-pull round from `a` to `b`.
    fn round(a: &mut Table, b: &mut Table) {
        let (to_a, wants) = b.compare(&a.digest());
        a.apply(to_a);
        let to_b = a.deltas(&wants);
        b.apply(to_b);
    }

    fn view(t: &Table) -> Vec<(u64, u64, u64, Status)> {
        t.all().map(|k| (k.entry.id.0, k.entry.version, k.beat.heartbeat, k.entry.status)).collect()
    }

    #[test]
    fn a_round_brings_both_sides_level() {
        let mut a = Table::new(entry(1, 1));
        let mut b = Table::new(entry(2, 1));
        b.learn(vec![entry(3, 4)]);
        a.beat(10, 100, 0);
        round(&mut a, &mut b);
        assert_eq!(view(&a), view(&b));
        assert_eq!(a.len(), 3);
        assert_eq!(b.get(NodeId(1)).map(|k| k.beat.keys), Some(10), "the load travels with the beat");
        // Nothing new: nothing but the digest travels.
        let (deltas, wants) = b.compare(&a.digest());
        assert!(deltas.is_empty() && wants.is_empty());
        // A new heartbeat travels as a beat alone.
        a.beat(11, 100, 0);
        let (deltas, wants) = b.compare(&a.digest());
        assert!(deltas.is_empty());
        assert_eq!(wants, [NodeId(1)]);
        let pushed = a.deltas(&wants);
        let applied = b.apply(vec![Delta { entry: None, ..pushed[0].clone() }]);
        assert_eq!(applied.heard, [NodeId(1)]);
        assert!(!applied.entries_changed);
    }

    #[test]
    fn newer_versions_win_and_nobody_else_changes_this_nodes_entry() {
        let mut t = Table::new(entry(1, 5));
        t.learn(vec![entry(2, 3)]);
        let mut moved = entry(2, 4);
        moved.peer_addr = "10.0.0.2:16379".into();
        assert!(t.learn(vec![moved.clone()]).entries_changed);
        assert!(!t.learn(vec![entry(2, 3)]).entries_changed, "an older version does not win");
        assert_eq!(t.get(NodeId(2)).map(|k| k.entry.peer_addr.clone()), Some(moved.peer_addr));
        let applied = t.learn(vec![entry(1, 9)]);
        assert_eq!(applied.own_version_seen, Some(9), "a newer self is reported, not taken");
        assert_eq!(t.me().entry.version, 5);
        assert_eq!(t.learn(vec![entry(1, 4)]).own_version_seen, None);
        assert_eq!(t.learn(vec![entry(1, 5)]).own_version_seen, None, "this very entry");
        let mut elsewhere = entry(1, 5);
        elsewhere.peer_addr = "10.0.0.1:16379".into();
        assert_eq!(t.learn(vec![elsewhere]).own_version_seen, Some(5), "the same version, another entry");
        let ahead = DigestItem { id: NodeId(1), version: 5, heartbeat: 1000 };
        assert_eq!(t.another_self_in(&[ahead]), Some(5), "the same version, a heartbeat ahead");
    }

    #[test]
    fn removal_is_final_and_a_replacement_removes() {
        let mut t = Table::new(entry(1, 1));
        t.learn(vec![entry(2, 7)]);
        let mut new = entry(9, 1);
        new.replaces = Some(NodeId(2));
        new.peer_addr = entry(2, 7).peer_addr;
        t.learn(vec![new]);
        assert_eq!(t.get(NodeId(2)).map(|k| (k.entry.status, k.entry.version)), Some((Status::Removed, REMOVED)));
        assert!(!t.learn(vec![entry(2, 1000)]).entries_changed, "stale gossip cannot bring it back");
        assert_eq!(t.get(NodeId(2)).map(|k| k.entry.status), Some(Status::Removed));
        t.remove(NodeId(1));
        assert_eq!(t.me().entry.status, Status::Valid, "this node does not remove itself here");
    }

    #[test]
    fn the_table_is_bounded_and_full_it_still_follows_its_members() {
        let mut t = Table::new(entry(1, 1));
        let applied = t.learn((2..=MAX_MEMBERS as u64 + 100).map(|i| entry(i, 1)).collect());
        assert_eq!(t.len(), MAX_MEMBERS);
        assert_eq!(applied.refused, 100);
        assert!(t.get(NodeId(MAX_MEMBERS as u64 + 1)).is_none(), "no room for a new member");
        let mut moved = entry(2, 2);
        moved.peer_addr = "10.0.0.2:16379".into();
        assert!(t.learn(vec![moved]).entries_changed, "known members still change");
        // Neither a removal nor a replacement of a member not known adds one.
        t.remove(NodeId(1 << 40));
        let mut newer = entry(3, 2);
        newer.replaces = Some(NodeId(1 << 41));
        t.learn(vec![newer]);
        assert_eq!(t.len(), MAX_MEMBERS);
        assert!(t.get(NodeId(1 << 40)).is_none() && t.get(NodeId(1 << 41)).is_none());
    }

    #[test]
    fn implausible_entries_are_refused() {
        let mut t = Table::new(entry(1, 1));
        let with = |id, f: &dyn Fn(&mut Entry)| {
            let mut e = entry(id, 5);
            f(&mut e);
            e
        };
        let refused = vec![
            with(2, &|e| e.version = REMOVED),
            with(3, &|e| e.version = MAX_VERSION + 1),
            with(4, &|e| e.status = Status::Removed),
            with(5, &|e| e.peer_addr = "not an address".into()),
            with(6, &|e| e.peer_addr = String::new()),
            with(7, &|e| e.client_addr = "x:1\nforged log line".into()),
            with(8, &|e| e.peer_addr = "127.0.0.1:70000".into()),
        ];
        let applied = t.learn(refused);
        assert_eq!((applied.refused, t.len(), applied.entries_changed), (7, 1, false));
        let accepted = vec![
            with(9, &|e| e.version = MAX_VERSION),
            with(10, &|e| {
                e.status = Status::Removed;
                e.version = REMOVED;
                e.client_addr = String::new();
                e.peer_addr = String::new();
            }),
            with(11, &|e| e.peer_addr = "node-11.example:16379".into()),
        ];
        assert_eq!(t.learn(accepted).refused, 0);
        assert_eq!(t.len(), 4);
        // A delta whose entry is another member's, or another version.
        let stray = Delta { id: NodeId(12), version: 5, entry: Some(entry(13, 5)), beat: Beat::default() };
        let skewed = Delta { id: NodeId(14), version: 6, entry: Some(entry(14, 5)), beat: Beat::default() };
        assert_eq!(t.apply(vec![stray, skewed]).refused, 2);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn a_member_replaces_only_the_one_at_its_address() {
        let mut t = Table::new(entry(1, 1));
        t.learn(vec![entry(2, 7), entry(3, 7)]);
        let mut elsewhere = entry(9, 1);
        elsewhere.replaces = Some(NodeId(2));
        assert!(t.learn(vec![elsewhere]).entries_changed, "the entry itself is taken");
        assert_eq!(t.get(NodeId(2)).map(|k| k.entry.status), Some(Status::Valid), "its claim is not");
        let mut me_again = entry(10, 1);
        me_again.replaces = Some(NodeId(1));
        me_again.peer_addr = t.me().entry.peer_addr.clone();
        t.learn(vec![me_again]);
        assert_eq!(t.me().entry.status, Status::Valid, "nobody replaces this node");
        let mut back = entry(11, 1);
        back.replaces = Some(NodeId(3));
        back.peer_addr = entry(3, 7).peer_addr;
        t.learn(vec![back]);
        assert_eq!(t.get(NodeId(3)).map(|k| k.entry.status), Some(Status::Removed), "at its address: replaced");
    }

    #[test]
    fn forged_versions_of_this_node_are_not_moved_past() {
        let mut t = Table::new(entry(1, 5));
        for forged in [REMOVED, REMOVED - 1, MAX_VERSION + 1, MAX_VERSION] {
            assert_eq!(t.another_self(forged, 1, None), None, "{forged}");
            let mut e = entry(1, forged);
            e.peer_addr = "10.6.6.6:1".into();
            assert_eq!(t.learn(vec![e]).own_version_seen, None, "{forged}");
        }
        assert_eq!(t.another_self(MAX_VERSION - 1, 1, None), Some(MAX_VERSION - 1), "moved past, up to MAX_VERSION");
        assert_eq!(t.me().entry.version, 5);
    }

    /// The bytes a round's three messages take on the wire.
    fn wire_bytes(request: crate::rpc::GossipRequest) -> usize {
        let mut out = bytes::BytesMut::new();
        crate::rpc::Request::Gossip(request).encode(0, &mut out);
        out.len()
    }

    #[test]
    fn a_thousand_members_converge_in_logarithmic_rounds() {
        const S: usize = 1000;
        let entries: Vec<Entry> = (1..=S as u64).map(|i| entry(i, 1)).collect();
        let mut tables: Vec<Table> = entries
            .iter()
            .map(|e| {
                let mut t = Table::new(e.clone());
                t.learn(entries.clone());
                t
            })
            .collect();
        // A settled cluster; then member 1 moves to a new address.
        let mut moved = entry(1, 2);
        moved.peer_addr = "10.9.9.9:16379".into();
        tables[0].set_me(moved);
        let (mut rng, mut rounds, mut bytes) = (0x9e37_79b9_7f4a_7c15u64, 0, 0usize);
        let knows = |t: &Table| t.get(NodeId(1)).is_some_and(|k| k.entry.version == 2);
        while !tables.iter().all(knows) {
            rounds += 1;
            assert!(rounds <= 40, "not converged after 40 rounds");
            for i in 0..S {
                tables[i].beat(0, 0, 0);
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let j = (i + 1 + (rng % (S as u64 - 1)) as usize) % S;
                let (a, b) = if i < j {
                    let (lo, hi) = tables.split_at_mut(j);
                    (&mut lo[i], &mut hi[0])
                } else {
                    let (lo, hi) = tables.split_at_mut(i);
                    (&mut hi[0], &mut lo[j])
                };
                let digest = a.digest();
                let (deltas, wants) = b.compare(&digest);
                bytes += wire_bytes(crate::rpc::GossipRequest::Syn(digest));
                bytes += wire_bytes(crate::rpc::GossipRequest::Push(deltas.clone())) + wants.len() * 8;
                a.apply(deltas);
                let pushed = a.deltas(&wants);
                bytes += wire_bytes(crate::rpc::GossipRequest::Push(pushed.clone()));
                b.apply(pushed);
            }
        }
        let log2 = (S as f64).log2().ceil() as usize;
        let per_node_round = bytes / (S * rounds);
        println!(
            "{S} members: converged in {rounds} rounds (log2 S = {log2}), {per_node_round} bytes per node per round"
        );
        assert!(rounds <= 2 * log2, "{rounds} rounds for {S} members");
        // The digest is ~14 bytes a member; beats and the one changed
        // entry add to it, but nothing like whole entries every round.
        assert!(per_node_round < 80 * S, "{per_node_round} bytes per node per round");
    }

    proptest! {
        /// Merging is commutative, associative and idempotent: tables that
        /// hear the same deltas in any order, any number of times, agree.
        #[test]
        fn merge_order_does_not_matter(
            updates in prop::collection::vec((2u64..8, 1u64..5, 0u64..6, any::<bool>()), 1..40),
            seed in any::<u64>(),
        ) {
            let deltas: Vec<Delta> = updates
                .iter()
                .map(|&(id, version, heartbeat, full)| Delta {
                    id: NodeId(id),
                    version,
                    entry: full.then(|| entry(id, version)),
                    beat: Beat { heartbeat, keys: heartbeat, bytes: 0, ring_epoch: 0 },
                })
                .collect();
            let mut shuffled = deltas.clone();
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            // A beat is taken only for the version the table holds, so one
            // pass in some order may miss one; twice over, any order reaches
            // the same table, and more passes change nothing.
            let mut b = Table::new(entry(1, 1));
            for d in shuffled.iter().chain(shuffled.iter()) {
                b.apply(vec![d.clone()]);
            }
            let mut c = Table::new(entry(1, 1));
            c.apply(deltas.clone());
            c.apply(deltas.clone());
            prop_assert_eq!(view(&b), view(&c), "commutative");
            let before = view(&c);
            c.apply(deltas);
            prop_assert_eq!(view(&c), before, "idempotent");
            for k in b.all() {
                let full_max = updates
                    .iter()
                    .filter(|u| u.0 == k.entry.id.0 && u.3)
                    .map(|u| u.1)
                    .max();
                if k.entry.id.0 != 1 {
                    prop_assert_eq!(Some(k.entry.version), full_max, "the newest whole entry wins");
                }
            }
        }
    }
}
