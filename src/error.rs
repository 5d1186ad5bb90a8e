//! The crate's error type, and the one place errors become RESP error
//! strings ([`Error::resp_message`]).
//!
//! Variants that a Redis client may match on carry Redis's exact wording;
//! shoal's own conditions use their own prefixes (`NOQUORUM`, `TRYAGAIN`).

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand { command: String, sub: String },
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR increment would produce NaN or Infinity")]
    NotFinite,
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpire(String),
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    #[error("ERR invalid context")]
    InvalidContext,
    #[error("ERR too many siblings for key; resolve them with SETCTX")]
    TooManySiblings,
    #[error("ERR key is too long ({0} bytes; at most {max} bytes)", max = crate::storage::MAX_KEY_LEN)]
    KeyTooLong(usize),
    /// Any other client error, written in full (prefix included).
    #[error("{0}")]
    Command(String),
    /// Fewer replicas than needed answered; `outcome` says what that means
    /// for a write.
    #[error("NOQUORUM {needed} replicas needed, {got} {outcome}")]
    NoQuorum { needed: usize, got: usize, outcome: Unmet },
    #[error("TRYAGAIN {0}")]
    TryAgain(String),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What a request that missed its quorum leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmet {
    /// A read: nothing changed.
    Read,
    /// A write refused before anything was written (its read, or reaching
    /// any replica, failed).
    NotWritten,
    /// A write that reached fewer than W replicas: it is not acknowledged,
    /// but the replicas it reached hold it and may spread it, so it may or
    /// may not end up applied (as with Cassandra's write timeout).
    MaybeWritten,
}

impl std::fmt::Display for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Read => "answered",
            Self::NotWritten => "answered; nothing was written",
            Self::MaybeWritten => "acknowledged; the write may or may not have been applied",
        })
    }
}

impl Error {
    /// A client error with Redis's generic `ERR` prefix.
    pub fn err(message: impl std::fmt::Display) -> Self {
        Self::Command(format!("ERR {message}"))
    }

    /// The error line sent to a client: one line, prefixed by an upper-case
    /// code as Redis clients expect.
    #[must_use]
    pub fn resp_message(&self) -> String {
        let text = match self {
            Self::Storage(_) | Self::Config(_) | Self::Io(_) => format!("ERR {self}"),
            Self::ShuttingDown => format!("TRYAGAIN {self}"),
            other => other.to_string(),
        };
        text.replace(['\r', '\n'], " ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_wording_is_exact() {
        assert_eq!(Error::WrongArity("get".into()).resp_message(), "ERR wrong number of arguments for 'get' command");
        assert_eq!(
            Error::UnknownSubcommand { command: "CLIENT".into(), sub: "foo".into() }.resp_message(),
            "ERR unknown subcommand 'foo'. Try CLIENT HELP."
        );
        let noquorum = |outcome| Error::NoQuorum { needed: 2, got: 1, outcome }.resp_message();
        assert_eq!(noquorum(Unmet::Read), "NOQUORUM 2 replicas needed, 1 answered");
        assert_eq!(noquorum(Unmet::NotWritten), "NOQUORUM 2 replicas needed, 1 answered; nothing was written");
        assert_eq!(
            noquorum(Unmet::MaybeWritten),
            "NOQUORUM 2 replicas needed, 1 acknowledged; the write may or may not have been applied"
        );
        assert_eq!(Error::Storage("disk\r\nfull".into()).resp_message(), "ERR storage failure: disk  full");
    }
}
