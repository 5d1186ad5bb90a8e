//! Stored objects: a set of sibling versions and the history that made them.
//!
//! Invariants, kept by every constructor and checked by decoding:
//! - the object's vector covers the dot of every sibling;
//! - no two siblings share a dot, and one dot always names the same write
//!   (stripping an expired value is the only change a sibling ever sees);
//! - siblings are sorted by dot, so equal objects compare and encode equal
//!   (read repair relies on that to tell a stale replica from a current one).
//!
//! A dot covered by the vector but absent from the siblings was superseded.
//! That single rule drives both the coordinator's update and the replica
//! merge, which is why merging is commutative, associative and idempotent.

use bytes::Bytes;

use super::{Context, Dot, VersionVector};

/// One version of a value: the write that made it, when, and what it wrote.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sibling {
    pub dot: Dot,
    /// Wall-clock milliseconds at the coordinator; picks the plain-GET winner
    /// and nothing else.
    pub timestamp: u64,
    /// Absolute expiry in milliseconds since the epoch.
    pub expires_at: Option<u64>,
    /// `None` is a tombstone (or a value whose expiry has been reclaimed).
    pub value: Option<Bytes>,
}

impl Sibling {
    /// True if this sibling's expiry has passed at `now`. As in Redis, a
    /// value lives through the millisecond it expires at.
    #[must_use]
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| now > at)
    }

    /// True if this sibling holds a value that has not expired at `now`.
    #[must_use]
    pub fn is_live(&self, now: u64) -> bool {
        self.value.is_some() && !self.expired(now)
    }

    /// The first moment this sibling is dead, if it ever dies by itself:
    /// just past its expiry, or the write time of a tombstone.
    #[must_use]
    pub fn dies_at(&self) -> Option<u64> {
        match (&self.value, self.expires_at) {
            (_, Some(at)) => Some(at.saturating_add(1)),
            (None, None) => Some(self.timestamp),
            (Some(_), None) => None,
        }
    }
}

/// A key's versions: siblings plus the vector of every dot seen for the key.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct Object {
    vv: VersionVector,
    siblings: Vec<Sibling>,
}

impl Object {
    /// The object of a key that was never written.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Assembles an object whose invariants the caller has checked.
    pub(crate) fn from_parts(vv: VersionVector, mut siblings: Vec<Sibling>) -> Self {
        debug_assert!(siblings.iter().all(|s| vv.covers(s.dot)));
        siblings.sort_by_key(|s| s.dot);
        Self { vv, siblings }
    }

    #[must_use]
    pub fn vv(&self) -> &VersionVector {
        &self.vv
    }

    #[must_use]
    pub fn siblings(&self) -> &[Sibling] {
        &self.siblings
    }

    /// For re-pointing values in place (same writes, same bytes).
    pub(crate) fn siblings_mut(&mut self) -> &mut [Sibling] {
        &mut self.siblings
    }

    /// The whole causal history of the object, as handed to clients.
    #[must_use]
    pub fn context(&self) -> Context {
        Context::from_vector(self.vv.clone())
    }

    /// The deterministic winner among siblings: latest timestamp, ties broken
    /// by the larger dot. Every replica picks the same one.
    #[must_use]
    pub fn winner(&self) -> Option<&Sibling> {
        self.siblings.iter().max_by_key(|s| (s.timestamp, s.dot))
    }

    /// The winner if it is a live value at `now`: what plain GET returns.
    #[must_use]
    pub fn live(&self, now: u64) -> Option<&Sibling> {
        self.winner().filter(|s| s.is_live(now))
    }

    /// The coordinator's update: discards exactly the siblings `ctx` covers,
    /// adds `new` and returns the context to hand back: `ctx` plus the new
    /// dot. `new.dot` must be fresh: the coordinating process's actor and
    /// its next counter.
    ///
    /// A context can only speak of writes this object has seen: claims
    /// beyond its vector (a forged or corrupt context, one meant for another
    /// key, or writes this copy has not merged yet) are dropped rather than
    /// allowed to cover writes the client never saw, which replicas would
    /// then discard. In a cluster the coordinator merges the other replicas'
    /// copies first, so a context read at quorum is covered in full. The new
    /// dot is folded into the context's vector when the context covered
    /// every dot of that actor for this key, since no write of that actor
    /// lies between.
    pub fn update(&mut self, ctx: &Context, new: Sibling) -> Context {
        let dot = new.dot;
        let ctx = ctx.clamped_to(&self.vv);
        let fold = ctx.vector().get(dot.actor) == self.vv.get(dot.actor);
        self.siblings.retain(|s| !ctx.covers(s.dot));
        self.vv.add(dot);
        let at = self.siblings.partition_point(|s| s.dot < dot);
        self.siblings.insert(at, new);
        ctx.with_dot(dot, fold)
    }

    /// A plain write: the object that `new` makes of this one when it
    /// supersedes every sibling (the context is the whole vector). Cheaper
    /// than [`update`](Self::update), which also computes a context to hand
    /// back.
    #[must_use]
    pub fn overwritten(&self, new: Sibling) -> Self {
        Self { vv: self.vv.plus(new.dot), siblings: vec![new] }
    }

    /// Forgets the writes this object superseded: keeps the vector entries
    /// of the actors that still have a sibling here, drops the rest.
    ///
    /// Those entries only serve to recognise superseded siblings in other
    /// copies of the key, so this is for the only copy there is (a single
    /// node). It keeps a key's history as small as its siblings, although
    /// every process writes as an actor of its own.
    pub fn forget_superseded(&mut self) {
        let siblings = &self.siblings;
        self.vv.retain(|actor| siblings.iter().any(|s| s.dot.actor == actor));
    }

    /// Merges a replica's object into this one. A sibling survives if the
    /// other side also has it or has not seen its dot; the vectors join.
    pub fn merge(&mut self, other: &Self) {
        let theirs = &other.siblings;
        self.siblings.retain(|s| !other.vv.covers(s.dot) || theirs.iter().any(|t| t.dot == s.dot));
        for t in theirs {
            match self.siblings.iter_mut().find(|s| s.dot == t.dot) {
                // The same write; only a reclaimed expiry may differ, and the
                // reclaimed copy is the later state of it.
                Some(mine) if t.value.is_none() => mine.value = None,
                Some(_) => {}
                None if !self.vv.covers(t.dot) => {
                    let at = self.siblings.partition_point(|s| s.dot < t.dot);
                    self.siblings.insert(at, t.clone());
                }
                None => {}
            }
        }
        self.vv.merge(&other.vv);
    }

    /// Whether [`merge`](Self::merge)ing `other` into this object would
    /// change it, judged by dots alone (no clone, no whole comparison): it
    /// does when `other` has seen a dot this object has not, supersedes a
    /// sibling held here, or holds a reclaimed copy of a value held here.
    #[must_use]
    pub fn changed_by(&self, other: &Self) -> bool {
        if !self.vv.dominates(&other.vv) {
            return true;
        }
        // Every dot of `other` is known here; siblings are in dot order.
        let find = |siblings: &[Sibling], dot| siblings.binary_search_by_key(&dot, |s: &Sibling| s.dot).ok();
        let superseded = self.siblings.iter().any(|s| other.vv.covers(s.dot) && find(&other.siblings, s.dot).is_none());
        let reclaimed = other.siblings.iter().any(|t| {
            t.value.is_none() && find(&self.siblings, t.dot).is_some_and(|i| self.siblings[i].value.is_some())
        });
        superseded || reclaimed
    }

    /// A 64-bit digest of the object's version summary: its vector and, per
    /// sibling, the dot and whether the value is still held. Equal objects
    /// have equal digests (a dot always names the same write, so the values
    /// need not be hashed), and a copy that lacks a write, or still holds
    /// one another copy superseded or reclaimed, almost surely differs.
    /// What a digest read compares: the same on every node and build.
    #[must_use]
    pub fn digest(&self) -> u64 {
        let mut h = mix(0, self.vv.len() as u64);
        for &(actor, counter) in self.vv.entries() {
            h = mix(mix(h, actor.0), counter);
        }
        h = mix(h, self.siblings.len() as u64);
        for s in &self.siblings {
            h = mix(mix(mix(h, s.dot.actor.0), s.dot.counter), u64::from(s.value.is_some()));
        }
        h
    }

    /// Drops the values of siblings that expired by `now`, keeping their
    /// dots, timestamps and expiries so the winner does not change.
    /// Returns true if anything changed.
    pub fn strip_expired(&mut self, now: u64) -> bool {
        let mut changed = false;
        for s in &mut self.siblings {
            if s.value.is_some() && s.expired(now) {
                s.value = None;
                changed = true;
            }
        }
        changed
    }

    /// When the whole object may be removed: every sibling dead for at least
    /// `grace` milliseconds. `None` while any sibling lives on its own.
    #[must_use]
    pub fn reap_at(&self, grace: u64) -> Option<u64> {
        let mut latest = 0u64;
        for s in &self.siblings {
            latest = latest.max(s.dies_at()?);
        }
        Some(latest.saturating_add(grace))
    }

    /// When the first value still held expires: the moment there is space
    /// to reclaim.
    #[must_use]
    pub fn next_expiry(&self) -> Option<u64> {
        self.siblings.iter().filter(|s| s.value.is_some() && s.expires_at.is_some()).filter_map(Sibling::dies_at).min()
    }

    /// The next moment background work is due on this object: an expiry to
    /// reclaim or the object to reap.
    #[must_use]
    pub fn next_due(&self, grace: u64) -> Option<u64> {
        match (self.next_expiry(), self.reap_at(grace)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// One step of [`Object::digest`]: folds `word` into `h` and mixes the
/// result (splitmix64's finalizer), so every bit of every word moves the
/// digest.
fn mix(h: u64, word: u64) -> u64 {
    let mut z = (h ^ word).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Actor;

    const A: Actor = Actor(0xa);
    const B: Actor = Actor(0xb);

    fn sib(node: Actor, counter: u64, ts: u64, value: &'static str) -> Sibling {
        Sibling {
            dot: Dot::new(node, counter),
            timestamp: ts,
            expires_at: None,
            value: Some(Bytes::from_static(value.as_bytes())),
        }
    }

    #[test]
    fn blind_writes_become_siblings_and_a_full_context_resolves_them() {
        let mut o = Object::new();
        let c1 = o.update(&Context::default(), sib(A, 1, 10, "x"));
        let c2 = o.update(&Context::default(), sib(A, 2, 11, "y"));
        assert_eq!(o.siblings().len(), 2);
        assert!(c1.covers(Dot::new(A, 1)) && !c1.covers(Dot::new(A, 2)));
        assert!(c2.covers(Dot::new(A, 2)) && !c2.covers(Dot::new(A, 1)));
        o.update(&o.context(), sib(B, 1, 12, "z"));
        assert_eq!(o.siblings().len(), 1);
        assert_eq!(o.winner().and_then(|s| s.value.clone()), Some(Bytes::from_static(b"z")));
    }

    #[test]
    fn overwriting_equals_updating_with_the_full_context() {
        let mut o = Object::new();
        o.update(&Context::default(), sib(A, 1, 1, "x"));
        o.update(&Context::default(), sib(B, 1, 2, "y"));
        let mut updated = o.clone();
        updated.update(&o.context(), sib(A, 2, 3, "z"));
        assert_eq!(o.overwritten(sib(A, 2, 3, "z")), updated);
        assert_eq!(Object::new().overwritten(sib(A, 1, 1, "x")).siblings().len(), 1);
    }

    #[test]
    fn the_only_copy_forgets_superseded_actors() {
        let mut o = Object::new();
        for (i, actor) in (1..=20).map(|n| Actor(100 + n)).enumerate() {
            o = o.overwritten(sib(actor, 1, i as u64, "v"));
            o.forget_superseded();
            assert_eq!(o.vv().len(), 1, "one entry after {} processes wrote the key", i + 1);
        }
        let ctx = o.context();
        o.update(&Context::default(), sib(A, 9, 30, "a"));
        o.update(&Context::default(), sib(B, 9, 31, "b"));
        o.forget_superseded();
        assert_eq!(o.vv().len(), 3, "every sibling's actor stays");
        o.update(&ctx, sib(A, 10, 32, "resolved"));
        o.forget_superseded();
        let live: Vec<_> = o.siblings().iter().map(|s| s.value.clone()).collect();
        assert_eq!(live.len(), 3, "the old context covered neither concurrent write: {live:?}");
    }

    #[test]
    fn winner_is_latest_timestamp_then_largest_dot() {
        let mut o = Object::new();
        o.update(&Context::default(), sib(B, 1, 5, "b"));
        o.update(&Context::default(), sib(A, 7, 5, "a"));
        assert_eq!(o.winner().map(|s| s.dot), Some(Dot::new(B, 1)));
        o.update(&Context::default(), sib(A, 8, 6, "later"));
        assert_eq!(o.winner().map(|s| s.dot), Some(Dot::new(A, 8)));
    }

    #[test]
    fn merge_drops_what_the_other_side_superseded() {
        let mut base = Object::new();
        base.update(&Context::default(), sib(A, 1, 1, "old"));
        let mut newer = base.clone();
        newer.update(&newer.context(), sib(A, 2, 2, "new"));
        let mut stale = base.clone();
        stale.merge(&newer);
        assert_eq!(stale, newer);
        let mut other = newer.clone();
        other.merge(&base);
        assert_eq!(other, newer);
    }

    #[test]
    fn expiry_is_stripped_then_reaped_after_grace() {
        let mut o = Object::new();
        let mut s = sib(A, 1, 100, "v");
        s.expires_at = Some(1_000);
        o.update(&Context::default(), s);
        assert!(o.live(1_000).is_some(), "alive through the millisecond it expires at");
        assert!(o.live(1_001).is_none());
        assert_eq!(o.next_due(50), Some(1_001));
        assert!(!o.strip_expired(1_000));
        assert!(o.strip_expired(1_001));
        assert_eq!(o.next_due(50), Some(1_051));
        assert!(!o.strip_expired(2_000));
    }

    #[test]
    fn a_live_value_is_never_due() {
        let mut o = Object::new();
        o.update(&Context::default(), sib(A, 1, 1, "v"));
        assert_eq!(o.next_due(10), None);
        o.update(&Context::default(), Sibling { dot: Dot::new(A, 2), timestamp: 2, expires_at: None, value: None });
        assert_eq!(o.reap_at(10), None, "a live sibling keeps the object");
    }
}
