//! shoal: a Dynamo-style distributed key-value store that speaks RESP.

pub mod clock;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod glob;
pub mod join;
pub mod metrics;
pub mod node;
pub mod resp;
pub mod ring;
pub mod shutdown;
pub mod storage;
pub mod version;
