//! `shoal repair`: asks one node to compare its partitions (or one) with
//! the other replicas now (`SHOAL.REPAIR`), then shows its progress once a
//! second until it is done, as `nodetool repair` does.

use std::time::Duration;

use crate::status::{Client, Fields};

/// How often progress is asked for.
const EVERY: Duration = Duration::from_secs(1);

/// One SHOAL.REPAIR reply, as a line of progress; and whether it is done.
fn line(reply: crate::status::Value) -> Result<(String, bool), String> {
    let mut f = Fields::of(reply)?;
    let running = f.int("running")? != 0;
    let text = format!(
        "{} of {} partitions, {} incomplete; keys compared {}, repaired {}; {} bytes; {:.1} s",
        f.int("partitions_done")?,
        f.int("partitions_total")?,
        f.int("partitions_incomplete")?,
        f.int("keys_compared")?,
        f.int("keys_repaired")?,
        f.int("bytes")?,
        f.int("elapsed_ms")? as f64 / 1000.0,
    );
    Ok((text, !running))
}

/// Starts the repair and prints its progress through `out` until it ends.
/// Fails if the node refuses, or if some partition could not be compared
/// with every replica.
pub fn run(
    host: &str,
    port: u16,
    password: Option<&str>,
    partition: Option<u32>,
    out: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let mut client = Client::connect(host, port, password)?;
    let partition = partition.map(|p| p.to_string());
    let mut request: Vec<&[u8]> = vec![b"SHOAL.REPAIR"];
    request.extend(partition.as_deref().map(str::as_bytes));
    let mut reply = client.ask(&request)?;
    loop {
        let incomplete = Fields::of(reply.clone())?.int("partitions_incomplete")?;
        let (text, done) = line(reply)?;
        out(&text);
        if done {
            return if incomplete == 0 {
                Ok(())
            } else {
                Err(format!("{incomplete} partitions could not be compared with every replica (one was down?)"))
            };
        }
        std::thread::sleep(EVERY);
        reply = client.ask(&[b"SHOAL.REPAIR", b"STATUS"])?;
    }
}
