//! The hash trees and key counts a clean stop saves, so that the next
//! start loads them instead of scanning every key (`Store::close` saves,
//! `Store::open` takes).
//!
//! A save describes the data at one moment, so it is written only once the
//! workers have stopped and every shard is durable, and it is taken away
//! (deleted, and the deletion made durable) as the next start reads it,
//! before the store accepts a write: a crash after that start finds no
//! save and rebuilds, never reusing a stale one. A save also names the
//! clean-stop record it was written with (the actor and its last counter,
//! see `meta.rs`), and is used only beside that record: a run that did not
//! know of the file (an older build) and left it behind leaves another
//! record or none. A save that does not check out (another format version
//! or partition count, a short file, a bad checksum) is ignored, and the
//! store rebuilds as after a crash.
//!
//! One file in the data directory, [`FILE`], written to a temporary name,
//! fsynced, renamed over and the directory fsynced, so it is whole or
//! absent. Only partitions holding something are written. Little-endian:
//!
//! ```text
//! "SHOALTRS"  version u32  partitions u32  actor u64  last counter u64
//! max_siblings u64  saved u32
//! saved × (partition u32, keys i64, expires i64, tombstones i64,
//!          with_siblings i64, value_bytes i64, LEAVES × leaf u64)
//! MD5 of everything before it (16 bytes)
//! ```

use std::io::Write;
use std::path::Path;

use md5::{Digest, Md5};

use super::stats::{Stats, Tally};
use super::trees::Trees;
use crate::antientropy::tree::{LEAVES, Tree};
use crate::error::Result;
use crate::version::Actor;

/// The save's name in the data directory.
pub(super) const FILE: &str = "saved-trees";
const MAGIC: &[u8; 8] = b"SHOALTRS";
/// Raised whenever what is saved (or how) changes.
/// 2: with value bytes.
const VERSION: u32 = 2;
const HEADER: usize = 8 + 4 + 4 + 16 + 8 + 4;
const RECORD: usize = 4 + 5 * 8 + LEAVES * 8;
const CHECKSUM: usize = 16;

/// What a save holds: the clean stop it goes with, the most siblings seen,
/// and each partition holding something with its counts and tree.
pub(super) struct Saved {
    /// The clean-stop record written with it: the actor, its last counter.
    pub stop: (Actor, u64),
    pub max_siblings: usize,
    pub partitions: Vec<(u32, Tally, Tree)>,
}

impl Saved {
    /// The state of every partition of `stats` and `trees` (which must all
    /// be ready), saved with the clean-stop record `stop`.
    pub fn of(stats: &Stats, trees: &Trees, partitions: u32, stop: (Actor, u64)) -> Self {
        let partitions = (0..partitions)
            .filter_map(|p| {
                let (tally, tree) = (stats.partition(p), trees.get(p));
                (tally != Tally::default() || tree.is_some()).then(|| (p, tally, tree.unwrap_or_default()))
            })
            .collect();
        Self { stop, max_siblings: stats.max_siblings(), partitions }
    }

    /// Makes this the state of `stats` and `trees` (fresh ones), every
    /// partition ready.
    pub fn install(self, stats: &Stats, trees: &Trees) {
        trees.clear();
        stats.saw_siblings(self.max_siblings);
        for (p, tally, tree) in self.partitions {
            stats.set(p, tally);
            trees.install(p, tree);
        }
    }

    fn encode(&self, partitions: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.partitions.len() * RECORD + CHECKSUM);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&partitions.to_le_bytes());
        out.extend_from_slice(&self.stop.0.0.to_le_bytes());
        out.extend_from_slice(&self.stop.1.to_le_bytes());
        out.extend_from_slice(&(self.max_siblings as u64).to_le_bytes());
        out.extend_from_slice(&u32::try_from(self.partitions.len()).unwrap_or(u32::MAX).to_le_bytes());
        for (p, tally, tree) in &self.partitions {
            out.extend_from_slice(&p.to_le_bytes());
            for n in [tally.keys, tally.expires, tally.tombstones, tally.with_siblings, tally.value_bytes] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            for leaf in tree.leaves() {
                out.extend_from_slice(&leaf.to_le_bytes());
            }
        }
        let checksum = Md5::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// The save in `bytes`, if it is whole and for `partitions`.
    fn decode(bytes: &[u8], partitions: u32) -> Option<Self> {
        let (body, checksum) = bytes.split_at_checked(bytes.len().checked_sub(CHECKSUM)?)?;
        if Md5::digest(body).as_slice() != checksum {
            return None;
        }
        let mut r = Reader(body);
        if r.take::<8>()? != *MAGIC || r.u32()? != VERSION || r.u32()? != partitions {
            return None;
        }
        let stop = (Actor(r.u64()?), r.u64()?);
        let max_siblings = usize::try_from(r.u64()?).ok()?;
        let saved = r.u32()? as usize;
        if r.0.len() != saved.checked_mul(RECORD)? {
            return None;
        }
        let mut out = Vec::with_capacity(saved);
        for _ in 0..saved {
            let p = r.u32()?;
            // In order, each once, each a partition.
            if p >= partitions || out.last().is_some_and(|&(last, _, _)| last >= p) {
                return None;
            }
            let [keys, expires, tombstones, with_siblings, value_bytes] =
                [r.i64()?, r.i64()?, r.i64()?, r.i64()?, r.i64()?];
            let mut leaves = Box::new([0u64; LEAVES]);
            for leaf in leaves.iter_mut() {
                *leaf = r.u64()?;
            }
            out.push((p, Tally { keys, expires, tombstones, with_siblings, value_bytes }, Tree::from_leaves(leaves)));
        }
        Some(Self { stop, max_siblings, partitions: out })
    }
}

/// A cursor over a save's bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
}

/// Writes `saved` to `dir` durably, whole or not at all.
///
/// # Errors
/// I/O errors (a save left half written is under another name, and
/// ignored).
pub(super) fn save(dir: &Path, saved: &Saved, partitions: u32) -> Result<()> {
    let temporary = dir.join(format!("{FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&saved.encode(partitions))?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Takes the save in `dir`: reads it, then deletes it durably, so that it
/// is used at most once. `None` if there was none, or it does not check out
/// for `partitions`.
///
/// # Errors
/// I/O errors other than the file being absent: a save that could not be
/// deleted must not be used, nor left for a later start.
pub(super) fn take(dir: &Path, partitions: u32) -> Result<Option<Saved>> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    std::fs::remove_file(&path)?;
    std::fs::File::open(dir)?.sync_all()?;
    let saved = Saved::decode(&bytes, partitions);
    if saved.is_none() {
        tracing::warn!(file = %path.display(), "ignoring saved trees that do not check out; rebuilding them");
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Partitioner;

    const Q: u32 = 16;

    fn sample() -> Saved {
        let mut tree = Tree::new();
        tree.toggle(3, 0xdead_beef);
        tree.toggle(1000, 42);
        let tally = Tally { keys: 2, expires: 1, tombstones: 0, with_siblings: 1, value_bytes: 30 };
        let other = Tally { keys: 0, expires: 0, tombstones: 1, with_siblings: 0, value_bytes: 0 };
        let mut tomb = Tree::new();
        tomb.toggle(7, 9);
        Saved { stop: (Actor(5), 9), max_siblings: 3, partitions: vec![(2, tally, tree), (15, other, tomb)] }
    }

    fn state(stats: &Stats, trees: &Trees) -> Vec<(Tally, Option<Tree>)> {
        (0..Q).map(|p| (stats.partition(p), trees.get(p))).collect()
    }

    #[test]
    fn a_save_comes_back_as_it_was_and_only_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (stats, trees) = (Stats::new(Q), Trees::new(Partitioner::new(Q)));
        sample().install(&stats, &trees);
        assert_eq!(trees.not_ready(), 0);
        save(dir.path(), &Saved::of(&stats, &trees, Q, (Actor(5), 9)), Q).expect("save");

        let (loaded_stats, loaded_trees) = (Stats::new(Q), Trees::new(Partitioner::new(Q)));
        assert_eq!(loaded_trees.not_ready(), Q as usize);
        let loaded = take(dir.path(), Q).expect("take").expect("a save");
        assert_eq!(loaded.stop, (Actor(5), 9));
        loaded.install(&loaded_stats, &loaded_trees);
        assert_eq!(state(&loaded_stats, &loaded_trees), state(&stats, &trees));
        assert_eq!(loaded_stats.max_siblings(), 3);
        assert_eq!(loaded_trees.not_ready(), 0);
        assert!(take(dir.path(), Q).expect("take").is_none(), "taken once");
    }

    #[test]
    fn anything_that_does_not_check_out_is_refused() {
        let good = sample().encode(Q);
        assert!(Saved::decode(&good, Q).is_some());
        assert!(Saved::decode(&good, Q * 2).is_none(), "another partition count");
        for cut in [0, 1, HEADER, good.len() - 1] {
            assert!(Saved::decode(&good[..cut], Q).is_none(), "cut at {cut}");
        }
        for at in [0, 9, HEADER + 5, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert!(Saved::decode(&bad, Q).is_none(), "byte {at} flipped");
        }
        // Another version, with a checksum that matches.
        let mut other = good[..good.len() - CHECKSUM].to_vec();
        other[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        let checksum = Md5::digest(&other);
        other.extend_from_slice(&checksum);
        assert!(Saved::decode(&other, Q).is_none(), "another version");
    }

    #[test]
    fn a_save_that_does_not_check_out_is_taken_away_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), b"not a save").expect("write");
        assert!(take(dir.path(), Q).expect("take").is_none());
        assert!(!dir.path().join(FILE).exists());
    }
}
