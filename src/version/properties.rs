//! Property tests of the version rules, over histories that real replicas
//! can produce: coordinated writes with contexts read from some replica and
//! merges between replicas, dots drawn from each replica's actor; and, for
//! the only copy of a key, that forgetting superseded actors changes no
//! sibling.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const NODES: u64 = 3;

#[derive(Clone, Debug)]
enum Step {
    /// Replica `at` coordinates a write; the client's context was read from
    /// replica `ctx_from` (or is empty).
    Write { at: usize, ctx_from: Option<usize>, tombstone: bool },
    /// Replica `into` merges replica `from`'s object.
    Merge { into: usize, from: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let n = NODES as usize;
    prop_oneof![
        (0..n, proptest::option::of(0..n), any::<bool>()).prop_map(|(at, ctx_from, tombstone)| Step::Write {
            at,
            ctx_from,
            tombstone
        }),
        (0..n, 0..n).prop_map(|(into, from)| Step::Merge { into, from }),
    ]
}

/// Plays a history and returns each replica's object.
fn play(steps: &[Step]) -> Vec<Object> {
    let mut replicas = vec![Object::new(); NODES as usize];
    let mut counters = [0u64; NODES as usize];
    for (t, s) in steps.iter().enumerate() {
        match *s {
            Step::Write { at, ctx_from, tombstone } => {
                counters[at] += 1;
                let ctx = ctx_from.map(|i| replicas[i].context()).unwrap_or_default();
                let sibling = Sibling {
                    dot: Dot::new(Actor(at as u64 + 1), counters[at]),
                    timestamp: t as u64,
                    expires_at: None,
                    value: (!tombstone).then(|| Bytes::from(format!("v{t}"))),
                };
                replicas[at].update(&ctx, sibling);
            }
            Step::Merge { into, from } => {
                let other = replicas[from].clone();
                replicas[into].merge(&other);
            }
        }
    }
    replicas
}

fn merged(a: &Object, b: &Object) -> Object {
    let mut m = a.clone();
    m.merge(b);
    m
}

/// Objects compare as sets of siblings.
fn canonical(o: &Object) -> (Vec<(Actor, u64)>, Vec<Sibling>) {
    let mut s = o.siblings().to_vec();
    s.sort_by_key(|s| s.dot);
    (o.vv().entries().to_vec(), s)
}

proptest! {
    #[test]
    fn changed_by_tells_exactly_whether_a_merge_changes_the_object(
        steps in prop::collection::vec(step(), 0..40),
        reclaim in any::<bool>(),
    ) {
        let r = play(&steps);
        for a in &r {
            for b in &r {
                let mut b = b.clone();
                // A replica that reclaimed an expired value keeps its sibling
                // without the value.
                if reclaim && let Some(s) = b.siblings_mut().first_mut() {
                    s.value = None;
                }
                prop_assert_eq!(a.changed_by(&b), merged(a, &b) != *a, "{:?} / {:?}", a, b);
            }
        }
    }

    #[test]
    fn digests_are_equal_exactly_when_objects_are(
        steps in prop::collection::vec(step(), 0..40),
        reclaim in any::<bool>(),
    ) {
        let r = play(&steps);
        let mut copies: Vec<Object> = r.clone();
        for o in &r {
            for p in &r {
                copies.push(merged(o, p));
            }
            let mut o = o.clone();
            if reclaim && let Some(s) = o.siblings_mut().first_mut() {
                s.value = None;
            }
            copies.push(o);
        }
        for a in &copies {
            for b in &copies {
                prop_assert_eq!(a.digest() == b.digest(), a == b, "{:?} / {:?}", a, b);
            }
        }
    }

    #[test]
    fn merge_is_commutative_associative_idempotent(steps in prop::collection::vec(step(), 0..40)) {
        let r = play(&steps);
        let (a, b, c) = (&r[0], &r[1], &r[2]);
        prop_assert_eq!(canonical(&merged(a, b)), canonical(&merged(b, a)));
        prop_assert_eq!(canonical(&merged(&merged(a, b), c)), canonical(&merged(a, &merged(b, c))));
        prop_assert_eq!(canonical(&merged(a, a)), canonical(a));
    }

    #[test]
    fn equal_histories_give_identical_objects(steps in prop::collection::vec(step(), 0..40)) {
        // Merging in either order gives the same object, field for field:
        // what read repair compares.
        let r = play(&steps);
        prop_assert_eq!(merged(&r[0], &r[1]), merged(&r[1], &r[0]));
        prop_assert_eq!(merged(&r[0], &r[1]).encode(), merged(&r[1], &r[0]).encode());
    }

    #[test]
    fn merge_keeps_every_sibling_the_other_side_did_not_supersede(steps in prop::collection::vec(step(), 0..40)) {
        let r = play(&steps);
        let m = merged(&r[0], &r[1]);
        for (mine, theirs) in [(&r[0], &r[1]), (&r[1], &r[0])] {
            for s in mine.siblings() {
                let superseded = theirs.vv().covers(s.dot) && !theirs.siblings().iter().any(|t| t.dot == s.dot);
                prop_assert_eq!(m.siblings().iter().any(|t| t.dot == s.dot), !superseded);
            }
        }
    }

    #[test]
    fn no_context_makes_replicas_drop_what_the_coordinator_never_saw(
        steps in prop::collection::vec(step(), 0..40),
        forged in prop::collection::vec((1u64..=NODES, 0u64..1_000_000), 0..4),
        forged_dots in prop::collection::vec((1u64..=NODES, 1u64..1_000_000), 0..3),
    ) {
        let r = play(&steps);
        let (mut x, y) = (r[0].clone(), &r[1]);
        let mut ctx = Context::from_vector(VersionVector::from_entries(forged.into_iter().map(|(n, c)| (Actor(n), c))));
        for (n, c) in forged_dots {
            ctx = ctx.with_dot(Dot::new(Actor(n), c), false);
        }
        let seen = x.vv().clone();
        x.update(&ctx, Sibling { dot: Dot::new(Actor(1), 2_000_000), timestamp: 0, expires_at: None, value: Some(Bytes::from("new")) });
        let after = merged(y, &x);
        for s in y.siblings() {
            if !seen.covers(s.dot) {
                prop_assert!(after.siblings().iter().any(|t| t.dot == s.dot), "{:?} was dropped", s.dot);
            }
        }
    }

    #[test]
    fn writers_sharing_a_context_each_leave_a_sibling(start in prop::collection::vec(step(), 0..20), writers in 1usize..8) {
        let mut o = play(&start).swap_remove(0);
        let ctx = o.context();
        let before: Vec<Dot> = o.siblings().iter().map(|s| s.dot).collect();
        for i in 0..writers {
            o.update(&ctx, Sibling { dot: Dot::new(Actor(9), 1000 + i as u64), timestamp: 1, expires_at: None, value: Some(Bytes::from("w")) });
        }
        prop_assert_eq!(o.siblings().len(), writers);
        prop_assert!(o.siblings().iter().all(|s| !before.contains(&s.dot)));
        o.update(&o.context(), Sibling { dot: Dot::new(Actor(9), 5000), timestamp: 2, expires_at: None, value: Some(Bytes::from("m")) });
        prop_assert_eq!(o.siblings().len(), 1);
    }

    #[test]
    fn interleaved_writers_never_multiply_siblings(rounds in 1usize..60, order in prop::collection::vec(any::<bool>(), 1..60)) {
        let mut o = Object::new();
        let mut ctx = [Context::default(), Context::default()];
        let mut counter = 0;
        for (i, &who) in order.iter().cycle().take(rounds * 2).enumerate() {
            let w = usize::from(who);
            counter += 1;
            let sibling = Sibling { dot: Dot::new(Actor(1), counter), timestamp: i as u64, expires_at: None, value: Some(Bytes::from(format!("{w}"))) };
            ctx[w] = o.update(&ctx[w], sibling);
        }
        let writers: std::collections::BTreeSet<_> = order.iter().cycle().take(rounds * 2).collect();
        prop_assert_eq!(o.siblings().len(), writers.len());
    }

    #[test]
    fn objects_round_trip_and_truncations_fail(steps in prop::collection::vec(step(), 0..30), expiry in proptest::option::of(any::<u64>())) {
        let mut o = play(&steps).swap_remove(0);
        if let (Some(at), Some(s)) = (expiry, o.siblings().first().cloned()) {
            o.update(&Context::default(), Sibling { expires_at: Some(at), dot: Dot::new(Actor(77), 1), ..s });
        }
        let bytes = o.encode();
        prop_assert_eq!(Object::decode(&bytes), Ok(o));
        for cut in 0..bytes.len() {
            prop_assert!(Object::decode(&bytes.slice(..cut)).is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Object::decode(&Bytes::from(bytes.clone()));
        let _ = Context::decode(&bytes);
    }

    #[test]
    fn contexts_round_trip(steps in prop::collection::vec(step(), 0..30), extra in prop::collection::vec((1u64..4, 1u64..100), 0..5)) {
        let o = play(&steps).swap_remove(0);
        let mut ctx = o.context();
        for (node, counter) in extra {
            ctx = ctx.with_dot(Dot::new(Actor(node), counter + 1000), false);
        }
        prop_assert_eq!(Context::decode(ctx.encode().as_bytes()), Ok(ctx));
    }
}

/// A step in the life of a key's only copy.
#[derive(Clone, Debug)]
enum Solo {
    /// The process restarts: a new actor, counting from 1.
    Restart,
    /// A context write with one of the contexts saved so far (or blind).
    Write { ctx: Option<usize>, tombstone: bool },
    /// A plain write (SET): supersedes every sibling.
    Plain,
}

fn solo() -> impl Strategy<Value = Solo> {
    prop_oneof![
        1 => Just(Solo::Restart),
        6 => (proptest::option::of(0..64usize), any::<bool>())
            .prop_map(|(ctx, tombstone)| Solo::Write { ctx, tombstone }),
        1 => Just(Solo::Plain),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Two copies of one key see the same writes with the same contexts
    /// (each copy's own contexts, saved at random moments); one forgets
    /// the actors its writes supersede, as a single node does. Their
    /// sibling sets never differ.
    #[test]
    fn forgetting_on_the_only_copy_changes_no_sibling(steps in prop::collection::vec(solo(), 0..60)) {
        let (mut kept, mut forgetting) = (Object::new(), Object::new());
        let (mut kept_ctx, mut forgetting_ctx): (Vec<Context>, Vec<Context>) = (Vec::new(), Vec::new());
        let (mut actor, mut counter) = (1u64, 0u64);
        for (t, step) in steps.iter().enumerate() {
            let sibling = |counter, value: Option<Bytes>| Sibling {
                dot: Dot::new(Actor(actor), counter),
                timestamp: t as u64,
                expires_at: None,
                value,
            };
            match *step {
                Solo::Restart => {
                    actor += 1;
                    counter = 0;
                }
                Solo::Write { ctx, tombstone } => {
                    counter += 1;
                    let new = sibling(counter, (!tombstone).then(|| Bytes::from(format!("v{t}"))));
                    let (a, b) = match ctx {
                        Some(i) if !kept_ctx.is_empty() => {
                            (kept_ctx[i % kept_ctx.len()].clone(), forgetting_ctx[i % forgetting_ctx.len()].clone())
                        }
                        _ => (Context::default(), Context::default()),
                    };
                    let returned = (kept.update(&a, new.clone()), forgetting.update(&b, new));
                    forgetting.forget_superseded();
                    kept_ctx.extend([returned.0, kept.context()]);
                    forgetting_ctx.extend([returned.1, forgetting.context()]);
                }
                Solo::Plain => {
                    counter += 1;
                    let new = sibling(counter, Some(Bytes::from("p")));
                    kept = kept.overwritten(new.clone());
                    forgetting = forgetting.overwritten(new);
                    forgetting.forget_superseded();
                }
            }
            let dots = |o: &Object| o.siblings().iter().map(|s| s.dot).collect::<Vec<Dot>>();
            prop_assert_eq!(dots(&kept), dots(&forgetting));
        }
    }
}
