//! Command handlers, one file per family.

pub mod admin;
pub mod connection;
pub mod context;
pub mod info;
pub mod keys;
pub mod ring;
pub mod server;
pub mod strings;
