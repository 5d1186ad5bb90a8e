//! `shoal join`, `shoal leave`, `shoal remove`, `shoal plan` and `shoal
//! commit`: the SHOAL.JOIN, SHOAL.LEAVE, SHOAL.REMOVE, SHOAL.PLAN and
//! SHOAL.COMMIT commands of one node, their answers printed for people
//! (the plan as a table).

use std::fmt::Write as _;

use crate::status::{Client, Fields, Value, text};

/// How long a change refused for now (TRYAGAIN: a claimant catching up
/// with its peers, a ring changing meanwhile) is asked again.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `request` to the node and returns what to print.
pub fn run(host: &str, port: u16, password: Option<&str>, request: &[&[u8]]) -> Result<String, String> {
    let mut client = Client::connect(host, port, password)?;
    let started = std::time::Instant::now();
    let reply = loop {
        match client.ask(request)? {
            Value::Error(e) if e.starts_with("TRYAGAIN") && started.elapsed() < RETRY_FOR => {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            reply => break reply,
        }
    };
    if request.first().is_some_and(|c| c.eq_ignore_ascii_case(b"SHOAL.PLAN")) && request.len() == 1 {
        return plan(reply);
    }
    Ok(format!("{}\n", text(reply)?))
}

/// SHOAL.PLAN's reply as a table (keys and bytes to copy are estimates).
fn plan(reply: Value) -> Result<String, String> {
    let mut f = Fields::of(reply)?;
    let mut out = String::new();
    let epoch = f.int("epoch")?;
    let claimant = f.text("claimant")?;
    let in_progress = f.int("in_progress")? != 0;
    let _ = writeln!(out, "ring epoch {epoch}, claimant {claimant}");
    let staged = match f.take("staged")? {
        Value::Array(items) => items,
        other => return Err(format!("staged: expected a list, got {other:?}")),
    };
    for item in staged {
        let mut s = Fields::of(item)?;
        let committed = if s.int("committed")? != 0 { "committed" } else { "staged" };
        let _ = writeln!(out, "{committed}: {} {}", s.text("change")?, s.text("node")?);
    }
    let moves = f.int("moves")?;
    if moves == 0 && !in_progress && out.lines().count() == 1 {
        out.push_str("no change staged or in progress\n");
        return Ok(out);
    }
    let done = f.int("moves_done")?;
    let _ = writeln!(
        out,
        "{}: {} partitions change owner, {moves} partition copies to make{}; a key loses at most {} replica(s) at once",
        if in_progress { "in progress" } else { "if committed" },
        f.int("owners_changed")?,
        if in_progress { format!(" ({done} done)") } else { String::new() },
        f.int("max_replicas_lost_at_once")?,
    );
    let _ = writeln!(
        out,
        "{:<18} {:>9} {:>9} {:>8} {:>9} {:>12} {:>14}",
        "member", "owns now", "after", "gains", "gives up", "keys to copy", "bytes to copy"
    );
    let members = match f.take("members")? {
        Value::Array(items) => items,
        other => return Err(format!("members: expected a list, got {other:?}")),
    };
    for m in members {
        let mut m = Fields::of(m)?;
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>9} {:>8} {:>9} {:>12} {:>14}",
            m.text("id")?,
            m.int("partitions_now")?,
            m.int("partitions_after")?,
            m.int("replicas_gained")?,
            m.int("replicas_given_up")?,
            m.int("keys_to_receive")?,
            m.int("bytes_to_receive")?,
        );
    }
    Ok(out)
}
