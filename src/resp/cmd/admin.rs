//! shoal's own commands, under the `SHOAL.` prefix so that redis-cli can
//! administer a cluster: SHOAL.STATUS (the cluster and its members, up or
//! down), SHOAL.WHERE (where a key lives and what each node holds of it)
//! and SHOAL.REPAIR (anti-entropy now, and its progress).

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::resp::args::Args;
use crate::resp::reply::Reply;
use crate::resp::session::Session;
use crate::rpc::Status;

fn field(name: &'static str, value: Reply) -> (Reply, Reply) {
    (Reply::bulk(name), value)
}

/// SHOAL.STATUS → the cluster (id, Q, N, effective N) and one map per
/// member: id, addresses, status, up or down as this node sees it and the
/// failure detector's phi, when it was last heard from, the partitions it
/// owns (and what share), the keys and bytes it holds, the hints this
/// node keeps for it (writes it missed, waiting to be handed over) and,
/// while this node hands them over, how far it is.
pub async fn status(s: &Session, _: Args) -> Result<Reply> {
    let coordinator = s.coordinator();
    let view = coordinator.view();
    let (cluster, members) = coordinator.membership().status();
    let q = view.ring.partition_count();
    let membership = coordinator.membership();
    let ring = membership.ring_state();
    let n = membership.cluster_n();
    let moves = ring.moves(n);
    let members = members
        .into_iter()
        .filter(|m| m.entry.status != Status::Removed)
        .map(|m| {
            let owned = view.ring.owned_by(m.entry.id);
            Reply::Map(vec![
                field("id", Reply::bulk(m.entry.id.to_string())),
                field("address", Reply::bulk(m.entry.client_addr)),
                field("peer", Reply::bulk(m.entry.peer_addr)),
                field("status", Reply::bulk(ring_status(&ring, m.entry.id))),
                field("version", Reply::Int(i64::try_from(m.entry.version).unwrap_or(i64::MAX))),
                field("up", Reply::Int(i64::from(m.up))),
                field("phi", Reply::Double((m.phi * 100.0).round() / 100.0)),
                field("last_heard_ms", m.last_heard_ms.map_or(Reply::Int(-1), |ms| Reply::Int(ms as i64))),
                field("partitions", Reply::Int(owned as i64)),
                field("percent", Reply::Double((owned as f64 * 10_000.0 / f64::from(q.max(1))).round() / 100.0)),
                field("keys", Reply::Int(m.keys as i64)),
                field("bytes", Reply::Int(m.bytes as i64)),
                field(
                    "hints",
                    Reply::Int(i64::try_from(coordinator.store().hints_held_for(m.entry.id)).unwrap_or(i64::MAX)),
                ),
                field(
                    "delivering",
                    Reply::bulk(s.server.metrics.delivery(m.entry.id).map(|d| d.progress()).unwrap_or_default()),
                ),
                field("self", Reply::Int(i64::from(m.me))),
            ])
        })
        .collect();
    let t = s.server.transfers.state();
    let running = t
        .running
        .iter()
        .map(|r| {
            Reply::Map(vec![
                field("partition", Reply::Int(i64::from(r.partition))),
                field("from", Reply::bulk(r.from.to_string())),
                field("keys", Reply::Int(r.keys as i64)),
                field("bytes", Reply::Int(r.bytes as i64)),
                field("seconds", Reply::Double((r.started.elapsed().as_secs_f64() * 10.0).round() / 10.0)),
            ])
        })
        .collect();
    let transfers = Reply::Map(vec![
        field("partitions_total", Reply::Int(t.total as i64)),
        field("partitions_done", Reply::Int(t.done as i64)),
        field("keys", Reply::Int(t.keys as i64)),
        field("bytes", Reply::Int(t.bytes as i64)),
        field("bytes_per_second", Reply::Int(t.rate() as i64)),
        field("eta_seconds", Reply::Int(t.eta_seconds().map_or(-1, |e| e.ceil() as i64))),
        field("waiting_for_members", Reply::Int(i64::from(t.waiting))),
        field("running", Reply::Array(running)),
    ]);
    Ok(Reply::Map(vec![
        field("cluster", Reply::bulk(cluster.map_or_else(String::new, |c| format!("{:016x}", c.id)))),
        field("partitions", Reply::Int(i64::from(q))),
        field("n", Reply::Int(cluster.map_or(0, |c| i64::from(c.n)))),
        field("effective_n", Reply::Int(view.n as i64)),
        field("ring_epoch", Reply::Int(i64::try_from(ring.epoch).unwrap_or(i64::MAX))),
        field("staged", Reply::Int(ring.staged.len() as i64)),
        field("change_moves", Reply::Int(moves.len() as i64)),
        field("change_moves_done", Reply::Int(moves.iter().filter(|m| ring.is_done(m.partition, m.to)).count() as i64)),
        field("members", Reply::Array(members)),
        field("transfers", transfers),
    ]))
}

/// A member's standing in the ring: `valid` (owns partitions), `joining`
/// (gains partitions in the change in progress, or its join is staged),
/// `leaving` (gives up all it owns in the change in progress, or its leave
/// is staged), `removing` (its removal is staged or in progress), or
/// `not in ring` (a member that owns nothing and has nothing staged).
fn ring_status(ring: &crate::ring::state::RingState, id: crate::version::NodeId) -> String {
    use crate::ring::state::Change;
    let staged = ring.staged_for(id).map(|s| s.change);
    let owns = ring.owns(id);
    let in_next = ring.next.contains(&id);
    let status = if ring.removing.contains(&id) || staged == Some(Change::Remove) {
        "removing"
    } else if staged == Some(Change::Leave) || (owns && ring.in_progress() && !in_next) {
        "leaving"
    } else if staged == Some(Change::Join) || (!owns && in_next) {
        "joining"
    } else if owns {
        "valid"
    } else {
        "not in ring"
    };
    status.to_string()
}

/// SHOAL.WHERE key → the key's partition and its preference list: for each
/// node its id, address, role (primary or fallback), whether this node
/// believes it up, whether it holds the key, how many live values, its
/// context, and the ids of the nodes it keeps a hint about the key for.
pub async fn where_is(s: &Session, mut args: Args) -> Result<Reply> {
    let key = args.bytes()?;
    let (partition, holders) = s.coordinator().placement(&key).await?;
    let now = now_ms();
    let nodes = holders
        .into_iter()
        .map(|h| {
            let mut fields = vec![
                field("id", Reply::bulk(h.member.id.to_string())),
                field("address", Reply::bulk(h.member.client_addr)),
                field("role", Reply::bulk(if h.primary { "primary" } else { "fallback" })),
                field("up", Reply::Int(i64::from(h.up))),
            ];
            match h.object {
                Ok(object) => {
                    let live = object.as_ref().map_or(0, |o| o.siblings().iter().filter(|s| s.is_live(now)).count());
                    fields.push(field("holds", Reply::Int(i64::from(object.is_some()))));
                    fields.push(field("values", Reply::Int(live as i64)));
                    let context = object.map(|o| o.context().encode()).unwrap_or_default();
                    fields.push(field("context", Reply::bulk(context)));
                }
                Err(e) => fields.push(field("error", Reply::bulk(e))),
            }
            fields.push(field("hints", Reply::Array(h.hints.iter().map(|t| Reply::bulk(t.to_string())).collect())));
            Reply::Map(fields)
        })
        .collect();
    Ok(Reply::Map(vec![field("partition", Reply::Int(i64::from(partition))), field("nodes", Reply::Array(nodes))]))
}

/// SHOAL.REPAIR [partition | STATUS | PAUSE | RESUME]: with no argument,
/// compares every partition this node replicates with the other replicas
/// now, ahead of the background pass, and repairs what differs; with a
/// partition number, that partition. Either way, and with STATUS, the
/// reply is the repair's progress. PAUSE and RESUME stop and restart the
/// background pass (repairs asked for still run).
pub async fn repair(s: &Session, mut args: Args) -> Result<Reply> {
    let repairs = &s.server.repairs;
    let keyword = args.keyword();
    // At most one argument, checked before anything starts.
    args.finish()?;
    let progress = match keyword.as_deref() {
        None => {
            let view = s.coordinator().view();
            repairs.request(&view.replicated_by(s.coordinator().store().node_id()))
        }
        Some("STATUS") => repairs.progress(),
        Some(pause @ ("PAUSE" | "RESUME")) => {
            repairs.set_paused(pause == "PAUSE");
            return Ok(Reply::OK);
        }
        Some(other) => {
            let view = s.coordinator().view();
            let q = view.partitioner().count();
            let p = other.parse::<u32>().ok().filter(|&p| p < q).ok_or_else(|| {
                Error::err(format!("SHOAL.REPAIR takes a partition (0 to {}), STATUS, PAUSE or RESUME", q - 1))
            })?;
            if !view.replicated_by(s.coordinator().store().node_id()).contains(&p) {
                return Err(Error::err(format!(
                    "this node is not a replica of partition {p}; ask one of its replicas"
                )));
            }
            repairs.request(&[p])
        }
    };
    let end = if progress.running { now_ms() } else { progress.finished_ms };
    let elapsed = if progress.started_ms == 0 { 0 } else { end.saturating_sub(progress.started_ms) };
    let int = |v: u64| Reply::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let background = if s.server.config.anti_entropy_interval == 0 {
        "off"
    } else if repairs.paused() {
        "paused"
    } else {
        "running"
    };
    Ok(Reply::Map(vec![
        field("running", Reply::Int(i64::from(progress.running))),
        field("partitions_done", int(progress.partitions_done)),
        field("partitions_total", int(progress.partitions_total)),
        field("partitions_incomplete", int(progress.partitions_incomplete)),
        field("keys_compared", int(progress.keys_compared)),
        field("keys_repaired", int(progress.keys_repaired)),
        field("bytes", int(progress.bytes)),
        field("elapsed_ms", int(elapsed)),
        field("background", Reply::bulk(background)),
    ]))
}
