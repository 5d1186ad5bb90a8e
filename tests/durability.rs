//! Acknowledged writes survive a clean restart, a kill -9, and a restart
//! with fsync durability; shutdown on SIGTERM exits 0.

mod common;

use common::Shoal;
use redis::Commands;

fn write_keys(node: &Shoal, n: usize) {
    let mut c = node.client();
    for i in 0..n {
        let _: () = c.set(format!("key:{i}"), format!("value:{i}")).expect("set");
    }
    let _: () = c.set_ex("volatile", "v", 1000).expect("setex");
    let _: i64 = c.del("key:0").expect("del");
}

fn check_keys(node: &Shoal, n: usize) {
    let mut c = node.client();
    for i in 1..n {
        let v: Option<String> = c.get(format!("key:{i}")).expect("get");
        assert_eq!(v.as_deref(), Some(format!("value:{i}").as_str()), "key:{i}");
    }
    let gone: Option<String> = c.get("key:0").expect("get");
    assert_eq!(gone, None, "a delete is durable too");
    let ttl: i64 = c.ttl("volatile").expect("ttl");
    assert!((990..=1000).contains(&ttl), "expiry kept across restart: {ttl}");
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).expect("dbsize");
    assert_eq!(size, n as i64, "{n} keys: {} written, 1 deleted, 1 volatile", n);
}

#[test]
fn clean_restart_keeps_everything_and_exits_zero() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let node = Shoal::start_in(&dir, &[]);
    write_keys(&node, 300);
    let status = node.stop();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let node = Shoal::start_in(&dir, &[]);
    check_keys(&node, 300);
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let node = Shoal::start_in(&dir, &[]);
    write_keys(&node, 300);
    node.kill9();
    let node = Shoal::start_in(&dir, &[]);
    node.wait_counted();
    check_keys(&node, 300);
}

/// Writers on several connections over keys of every shard, the node
/// killed while they run: every write acknowledged before the kill is there
/// after the restart, whatever shard holds it.
#[test]
fn kill_9_under_load_across_shards_loses_no_acknowledged_write() {
    const WRITERS: usize = 4;
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let shards = [("SHOAL_STORAGE_THREADS", "4")];
    let node = Shoal::spawn(&dir, &[], &shards);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (mut c, stop) = (node.client(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("load:{w}:{i}");
                    // Pipelined in fours, so shards get batches of several.
                    let mut pipe = redis::pipe();
                    for j in 0..4 {
                        pipe.set(format!("{key}:{j}"), i).ignore();
                    }
                    match pipe.query::<()>(&mut c) {
                        Ok(()) => acknowledged.extend((0..4).map(|j| format!("{key}:{j}"))),
                        Err(_) => break,
                    }
                    i += 1;
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    node.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: Vec<String> = writers.into_iter().flat_map(|t| t.join().expect("writer")).collect();
    assert!(acknowledged.len() > 1_000, "only {} writes acknowledged before the kill", acknowledged.len());
    let node = Shoal::spawn(&dir, &[], &shards);
    let mut c = node.client();
    let mut missing = Vec::new();
    for chunk in acknowledged.chunks(500) {
        let values: Vec<Option<String>> = c.mget(chunk).expect("mget");
        missing.extend(chunk.iter().zip(values).filter(|(_, v)| v.is_none()).map(|(k, _)| k.clone()));
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
    let shard_dirs = std::fs::read_dir(dir.join("shards")).expect("shards").count();
    assert_eq!(shard_dirs, 4, "the data is spread over four shards");
}

#[test]
fn fsync_durability_keeps_writes_through_kill_9() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let node = Shoal::start_in(&dir, &["--durability", "fsync"]);
    write_keys(&node, 100);
    node.kill9();
    let node = Shoal::start_in(&dir, &["--durability", "fsync"]);
    node.wait_counted();
    check_keys(&node, 100);
}

#[test]
fn node_id_is_kept_with_the_data_and_new_for_a_new_directory() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let id = |node: &Shoal| {
        let info: String = redis::cmd("INFO").arg("server").query(&mut node.client()).expect("info");
        info.lines().find_map(|l| l.strip_prefix("shoal_node_id:")).expect("node id").trim().to_string()
    };
    let node = Shoal::start_in(&dir, &[]);
    let first = id(&node);
    node.stop();
    let node = Shoal::start_in(&dir, &[]);
    assert_eq!(id(&node), first);
    node.stop();
    std::fs::remove_dir_all(&dir).expect("wipe");
    let node = Shoal::start_in(&dir, &[]);
    assert_ne!(id(&node), first, "a wiped directory is a new node");
}
