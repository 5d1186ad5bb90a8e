//! Changing the cluster's members: SHOAL.JOIN, SHOAL.LEAVE, SHOAL.REMOVE
//! stage a change; SHOAL.PLAN shows what the staged changes (or the change
//! in progress) do; SHOAL.COMMIT starts them. Each of the three takes `NOW`
//! to commit at once. SHOAL.RING shows the ring as this node holds it.
//! Decisions are made by the claimant (see `ring::state`); any node passes
//! them on.

use crate::error::{Error, Result};
use crate::resp::args::Args;
use crate::resp::reply::Reply;
use crate::resp::session::Session;
use crate::ring::state::{Change, RingState};
use crate::rpc::Decision;
use crate::version::NodeId;

fn field(name: &'static str, value: Reply) -> (Reply, Reply) {
    (Reply::bulk(name), value)
}

fn int(n: impl TryInto<i64>) -> Reply {
    Reply::Int(n.try_into().unwrap_or(i64::MAX))
}

/// An optional trailing `NOW`: commit at once.
fn now_flag(args: &mut Args, command: &str) -> Result<bool> {
    let now = match args.keyword().as_deref() {
        None => false,
        Some("NOW") => true,
        Some(_) => return Err(Error::err(format!("{command} takes NOW (commit at once) or nothing more"))),
    };
    args.finish()?;
    Ok(now)
}

/// What a staged change answers: where it stands.
fn staged_reply(ring: &RingState, now: bool) -> Reply {
    Reply::bulk(if now {
        "OK, committed: it starts once no other change is in progress (SHOAL.PLAN shows it)".to_string()
    } else {
        format!(
            "OK, staged ({} change{} staged): SHOAL.PLAN shows what it would do, SHOAL.COMMIT starts it",
            ring.staged.len(),
            if ring.staged.len() == 1 { "" } else { "s" }
        )
    })
}

/// SHOAL.JOIN host:peerport [NOW]: makes this node (empty, alone in a
/// cluster of its own) a joining member of the cluster of the node at that
/// peer address.
pub async fn join(s: &Session, mut args: Args) -> Result<Reply> {
    let seed = String::from_utf8_lossy(&args.bytes()?).into_owned();
    let now = now_flag(&mut args, "SHOAL.JOIN")?;
    if !crate::rpc::valid_addr(&seed) {
        return Err(Error::err("SHOAL.JOIN takes a member's peer address, host:port (its client port + 10000)"));
    }
    s.coordinator().membership().join_cluster(&seed, now).await?;
    Ok(Reply::bulk(if now {
        "OK, joining: the join is committed and starts once the claimant takes it"
    } else {
        "OK, joining: the join is staged once the claimant takes it; SHOAL.PLAN shows it, SHOAL.COMMIT starts it"
    }))
}

/// SHOAL.LEAVE [NOW]: this node hands everything over, then stops being
/// a member.
pub async fn leave(s: &Session, mut args: Args) -> Result<Reply> {
    let now = now_flag(&mut args, "SHOAL.LEAVE")?;
    let membership = s.coordinator().membership();
    let me = s.coordinator().node_id();
    let ring = membership.ask_claimant(Decision::Stage { node: me, change: Change::Leave, commit: now }).await?;
    Ok(staged_reply(&ring, now))
}

/// SHOAL.REMOVE id [NOW] [FORCE]: takes out a member that is gone for
/// good; its partitions are rebuilt on their new owners from the other
/// replicas. FORCE, on the claimant only, decides without a majority up:
/// for a cluster that lost most of its members for good (say two of
/// three), whose survivors could otherwise never remove them.
pub async fn remove(s: &Session, mut args: Args) -> Result<Reply> {
    let text = String::from_utf8_lossy(&args.bytes()?).into_owned();
    let (mut now, mut force) = (false, false);
    while let Some(word) = args.keyword() {
        match word.as_str() {
            "NOW" => now = true,
            "FORCE" => force = true,
            _ => return Err(Error::err("SHOAL.REMOVE takes a member id, then NOW (commit at once) and FORCE")),
        }
    }
    let id = u64::from_str_radix(&text, 16)
        .map(NodeId)
        .map_err(|_| Error::err("SHOAL.REMOVE takes a member id, as SHOAL.STATUS shows it (16 hex digits)"))?;
    let coordinator = s.coordinator();
    if id == coordinator.node_id() {
        return Err(Error::err("this is the node to remove: SHOAL.LEAVE hands its data over first"));
    }
    if coordinator.view().is_up(id) {
        return Err(Error::err(format!(
            "{id} is up: SHOAL.LEAVE on it hands its data over; SHOAL.REMOVE is for a member gone for good (stop it first)"
        )));
    }
    let membership = coordinator.membership();
    let decision = Decision::Stage { node: id, change: Change::Remove, commit: now };
    let ring = if force {
        if membership.claimant() != Some(coordinator.node_id()) {
            let claimant = membership.claimant().map_or_else(|| "none up".to_string(), |c| c.to_string());
            return Err(Error::err(format!("FORCE is taken by the claimant only ({claimant})")));
        }
        membership.decide_forced(decision).await?
    } else {
        membership.ask_claimant(decision).await?
    };
    Ok(staged_reply(&ring, now))
}

/// SHOAL.COMMIT: starts every staged change.
pub async fn commit(s: &Session, args: Args) -> Result<Reply> {
    args.finish()?;
    s.coordinator().membership().ask_claimant(Decision::Commit).await?;
    Ok(Reply::bulk("OK, committed: the change starts once no other is in progress (SHOAL.PLAN shows it)"))
}

/// SHOAL.PLAN [CLEAR]: the change in progress, or what committing the
/// staged changes would do: per member the partitions it owns now and
/// after, the partitions (as replica sets) it gains and gives up and the
/// keys and bytes to copy to it (estimated from the keys each member holds
/// per partition and this node's average value size), the moves in all and how many are done, and the most
/// replicas any key loses at once. CLEAR takes back the staged changes.
pub async fn plan(s: &Session, mut args: Args) -> Result<Reply> {
    let keyword = args.keyword();
    args.finish()?;
    let membership = s.coordinator().membership();
    match keyword.as_deref() {
        None => {}
        Some("CLEAR") => {
            membership.ask_claimant(Decision::Clear).await?;
            return Ok(Reply::OK);
        }
        Some(_) => return Err(Error::err("SHOAL.PLAN takes CLEAR or nothing")),
    }
    membership.sync_with_claimant().await;
    let ring = membership.ring_state();
    let n = membership.cluster_n();
    let staged = ring
        .staged
        .iter()
        .map(|st| {
            Reply::Map(vec![
                field("node", Reply::bulk(st.node.to_string())),
                field("change", Reply::bulk(st.change.to_string())),
                field("committed", int(u8::from(st.commit))),
            ])
        })
        .collect();
    let mut fields = vec![
        field("epoch", int(ring.epoch)),
        field("claimant", Reply::bulk(membership.claimant().map(|c| c.to_string()).unwrap_or_default())),
        field("in_progress", int(u8::from(ring.in_progress()))),
        field("staged", Reply::Array(staged)),
    ];
    // (Claim can take a while on large rings: not on this thread.)
    let planned = ring.clone();
    let plan = tokio::task::spawn_blocking(move || planned.plan(n)).await.map_err(|_| Error::ShuttingDown)?;
    let Some(plan) = plan else {
        fields.push(field("moves", int(0)));
        return Ok(Reply::Map(fields));
    };
    let (_, statuses) = membership.status();
    // Keys per replicated partition, per member, from the keys each holds;
    // bytes from this node's average value size.
    let mut replicated: std::collections::HashMap<NodeId, u64> = std::collections::HashMap::new();
    for p in 0..plan.before.partition_count() {
        for &id in plan.before.replicas(p, n) {
            *replicated.entry(id).or_default() += 1;
        }
    }
    let per_partition = |id: NodeId| {
        let held = statuses.iter().find(|m| m.entry.id == id).map_or(0, |m| m.keys);
        held / replicated.get(&id).copied().unwrap_or(0).max(1)
    };
    let mine = s.coordinator().store().tally();
    let value_size = u64::try_from(mine.value_bytes / mine.keys.max(1)).unwrap_or(0);
    let mut nodes = plan.before.members();
    for id in plan.after.members() {
        if !nodes.contains(&id) {
            nodes.push(id);
        }
    }
    let members = nodes
        .iter()
        .map(|&id| {
            let (gains, losses) = plan.gains_and_losses(id, n);
            let keys: u64 = plan
                .moves
                .iter()
                .filter(|m| m.to == id)
                .map(|m| m.sources.first().map_or(0, |&src| per_partition(src)))
                .sum();
            Reply::Map(vec![
                field("id", Reply::bulk(id.to_string())),
                field("partitions_now", int(plan.before.owned_by(id))),
                field("partitions_after", int(plan.after.owned_by(id))),
                field("replicas_gained", int(gains)),
                field("replicas_given_up", int(losses)),
                field("keys_to_receive", int(keys)),
                field("bytes_to_receive", int(keys * value_size)),
            ])
        })
        .collect();
    let done = plan.moves.iter().filter(|m| ring.is_done(m.partition, m.to)).count();
    fields.extend([
        field("owners_changed", int(plan.owners_changed)),
        field("moves", int(plan.moves.len())),
        field("moves_done", int(if ring.in_progress() { done } else { 0 })),
        field("max_replicas_lost_at_once", int(plan.max_lost)),
        field("members", Reply::Array(members)),
    ]);
    Ok(Reply::Map(fields))
}

/// SHOAL.RING: the ring as this node holds it: its epoch, the member that
/// decided it, the owner of every partition (and, during a change, the
/// owners it leads to), and the moves of the change done so far.
pub async fn ring(s: &Session, args: Args) -> Result<Reply> {
    args.finish()?;
    let ring = s.coordinator().membership().ring_state();
    let ids = |owners: &[NodeId]| Reply::Array(owners.iter().map(|id| Reply::bulk(id.to_string())).collect());
    Ok(Reply::Map(vec![
        field("epoch", int(ring.epoch)),
        field("decided_by", Reply::bulk(if ring.is_known() { ring.claimant.to_string() } else { String::new() })),
        field("change", int(ring.change)),
        field("owners", ids(&ring.owners)),
        field("next", if ring.in_progress() { ids(&ring.next) } else { Reply::Nil }),
        field("moves_done", int(ring.done.len())),
    ]))
}
