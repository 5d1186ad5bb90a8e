//! A node restored from a backup loses no acknowledged write.
//!
//! Three `shoal` processes (N=3, R=W=2). Node 3 is stopped and its data
//! directory copied; it runs on and takes writes; it is stopped again, its
//! old copy restored, and it takes new writes of the same keys. The restored
//! directory knows nothing of the writes made after the backup, but the
//! other replicas hold them: the new writes must neither be mistaken for
//! those (same dots, so dropped as already seen) nor silently supersede them
//! (which needs having seen them). So every acknowledged value is still
//! there afterwards, the latest one is what GET reads, and every replica
//! ends with the same siblings.

mod common;

use std::path::Path;
use std::time::Duration;

use common::reply::{call, get, getctx_reply, info, int, members, set, where_is};
use common::{Shoal, copy_dir, wait_for};
use redis::Connection;

const KEYS: usize = 200;
const WAIT: Duration = Duration::from_secs(20);
const ENV: [(&str, &str); 3] = [("SHOAL_N", "3"), ("SHOAL_R", "2"), ("SHOAL_W", "2")];

fn start(dir: &Path, seed: Option<&str>) -> Shoal {
    match seed {
        Some(seed) => Shoal::spawn(dir, &["--seeds", seed], &ENV),
        None => Shoal::spawn(dir, &[], &ENV),
    }
}

/// Waits until every node sees the three members up and a read at R 3
/// through it succeeds.
fn wait_ready(nodes: [&Shoal; 3]) {
    for node in nodes {
        let mut c = node.client();
        wait_for(&format!("node on {} to see three members up", node.port), WAIT, || {
            let all = members(&mut c);
            (all.len() == 3 && all.iter().all(|m| int(&m["up"]) == 1)).then_some(())
        });
        wait_for(&format!("node on {} to read at R 3", node.port), WAIT, || {
            matches!(call!(c, "GETCTX", "probe", "R", 3), redis::Value::Array(_)).then_some(())
        });
    }
}

/// The keys: `x*` did not exist when the backup was taken, `y*` did.
fn keys() -> Vec<String> {
    (0..KEYS).map(|i| if i % 2 == 0 { format!("x{i}") } else { format!("y{i}") }).collect()
}

#[test]
fn a_node_restored_from_a_backup_loses_no_acknowledged_write() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (dir, backup) = (temp.path().join("n3"), temp.path().join("n3-backup"));
    let first = start(&temp.path().join("n1"), None);
    let seed = format!("127.0.0.1:{}", first.peer_port);
    let second = start(&temp.path().join("n2"), Some(&seed));
    let mut third = start(&dir, Some(&seed));
    wait_ready([&first, &second, &third]);
    let keys = keys();
    let mut c3 = third.client();
    for k in keys.iter().filter(|k| k.starts_with('y')) {
        set(&mut c3, k, "before the backup");
    }
    let actor = info(&mut c3, "server", "shoal_actor");
    drop(c3);

    // The backup: node 3 stopped, its directory copied.
    assert!(third.stop().success());
    copy_dir(&dir, &backup);

    // Node 3 runs on and takes writes the backup will not have. It
    // stopped cleanly and no run wrote since: it resumes its actor, so its
    // keys' histories do not grow.
    third = start(&dir, Some(&seed));
    wait_ready([&first, &second, &third]);
    let mut c3 = third.client();
    assert_eq!(info(&mut c3, "server", "shoal_actor"), actor, "a clean restart resumes the actor");
    for k in &keys {
        set(&mut c3, k, &format!("{k} after the backup"));
    }
    drop(c3);
    assert!(third.stop().success());

    // The backup is restored, and node 3 takes new writes of the same keys.
    std::fs::remove_dir_all(&dir).expect("remove");
    copy_dir(&backup, &dir);
    third = start(&dir, Some(&seed));
    wait_ready([&first, &second, &third]);
    let mut c3 = third.client();
    // The backup's clean-stop record is not the last word on its actor:
    // the other members have heard of the run after it, and refuse.
    assert_ne!(info(&mut c3, "server", "shoal_actor"), actor, "a restored backup must not resume its actor");
    assert!(third.log().contains("writing as a new actor"), "{}", third.log());
    for k in &keys {
        set(&mut c3, k, &format!("{k} after the restore"));
    }

    let mut conns: Vec<Connection> = [&first, &second, &third].iter().map(|n| n.client()).collect();
    for k in &keys {
        // Reading every replica repairs the ones that differ.
        let (_, values) = getctx_reply(&call!(conns[0], "GETCTX", k, "R", 3));
        let (restored, before) = (format!("{k} after the restore"), format!("{k} after the backup"));
        assert!(values.contains(&restored), "{k}: the write after the restore is kept: {values:?}");
        assert!(values.contains(&before), "{k}: the write the backup missed is kept: {values:?}");
        for (i, c) in conns.iter_mut().enumerate() {
            assert_eq!(
                get(c, k).as_deref(),
                Some(restored.as_str()),
                "GET {k} through node {}: the latest write",
                i + 1
            );
        }
    }
    for k in &keys {
        wait_for(&format!("the replicas of {k} to hold the same siblings"), WAIT, || {
            let (_, nodes) = where_is(&mut conns[1], k);
            let copies: Vec<_> = nodes.iter().filter(|h| h.primary).map(|h| h.copy.clone().ok()).collect();
            let same = copies.len() == 3 && copies.iter().all(|c| c.is_some() && *c == copies[0]);
            (same && copies[0].as_ref().is_some_and(|(holds, values, _)| *holds == 1 && *values == 2)).then_some(())
        });
    }

    // A plain SET through another node supersedes both siblings everywhere.
    for k in &keys {
        set(&mut conns[0], k, "settled");
        let (_, values) = getctx_reply(&call!(conns[1], "GETCTX", k, "R", 3));
        assert_eq!(values, ["settled"], "{k}");
    }
}
