//! The RESP front end: everything that speaks the Redis protocol.
//!
//! Data flows through the files in this order: `server` accepts a client;
//! `connection` reads its bytes; `parse` decodes requests (multibulk and
//! inline); `commands` looks each up in the command table, checks it and
//! dispatches it to a handler in `cmd/` (or queues it, `transaction`);
//! handlers parse their arguments with `args`, call the coordinator and
//! return a `reply`, which the connection encodes for the client's protocol
//! (RESP2 or RESP3) and writes back. `session` holds per-connection and
//! shared state.

pub mod args;
mod cmd;
mod commands;
mod connection;
pub mod parse;
pub mod reply;
mod server;
mod session;
mod transaction;

pub use server::serve;
pub use session::{Clients, Server};
