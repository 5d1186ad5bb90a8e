//! shoal: a Dynamo-style distributed key-value store that speaks RESP.

pub mod clock;
pub mod error;
pub mod ring;
pub mod storage;
pub mod version;
