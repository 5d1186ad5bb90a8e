//! shoal's own commands, under the `SHOAL.` prefix so that redis-cli can
//! administer a cluster: SHOAL.STATUS (the members) and SHOAL.WHERE (where
//! a key lives and what each node holds of it).

use crate::clock::now_ms;
use crate::error::Result;
use crate::resp::args::Args;
use crate::resp::reply::Reply;
use crate::resp::session::Session;

fn field(name: &'static str, value: Reply) -> (Reply, Reply) {
    (Reply::bulk(name), value)
}

/// SHOAL.STATUS → one map per member: id, address, peer address, the
/// partitions it owns, whether it is this node and whether it answers.
pub async fn status(s: &Session, _: Args) -> Result<Reply> {
    let members = s.coordinator().status().await;
    Ok(Reply::Array(
        members
            .into_iter()
            .map(|m| {
                Reply::Map(vec![
                    field("id", Reply::bulk(m.member.id.to_string())),
                    field("address", Reply::bulk(m.member.client_addr)),
                    field("peer", Reply::bulk(m.member.peer_addr)),
                    field("partitions", Reply::Int(m.partitions as i64)),
                    field("self", Reply::Int(i64::from(m.me))),
                    field("reachable", Reply::Int(i64::from(m.reachable))),
                ])
            })
            .collect(),
    ))
}

/// SHOAL.WHERE key → the key's partition and its preference list: for each
/// node its id, address, role (primary or fallback), whether it holds the
/// key, how many live values, and its context.
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
            Reply::Map(fields)
        })
        .collect();
    Ok(Reply::Map(vec![field("partition", Reply::Int(i64::from(partition))), field("nodes", Reply::Array(nodes))]))
}
