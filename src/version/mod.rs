//! Versions: dots, version vectors, sibling sets and their encoding. Pure:
//! no I/O, no clock (times are arguments), no tokio, no fjall.
//!
//! Every stored value is an [`Object`]: a set of [`Sibling`]s, each named by
//! the [`Dot`] of the write that made it, plus a [`VersionVector`] of every
//! dot the object has seen. A [`Context`] is the history a client carries
//! from a read to a write. The rules (see `object.rs`) make concurrent
//! writes siblings instead of losing one, and make replica merges
//! commutative, associative and idempotent.

pub(crate) mod codec;
mod context;
mod object;
mod vector;

#[cfg(test)]
mod properties;

pub use codec::{DecodeError, Encoded};
pub use context::Context;
pub use object::{Object, Sibling};
pub use vector::{Actor, Dot, NodeId, VersionVector};
